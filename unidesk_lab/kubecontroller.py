"""Lab controller for the Kubernetes API emulator: runs Deployments, StatefulSets and Jobs as real containerd containers via `ctr`.

One pod per workload, no ReplicaSets. Each workload runs one container (the pod template's first):
for every Deployment or StatefulSet generation the controller checks the image in containerd,
replaces the running container (`ctr run -d`) and reports the outcome in the status the way the
real controllers would (observedGeneration, replica counts, conditions), with a Pod object per
Deployment or StatefulSet. A missing image keeps the old container and reports `ImagePullBackOff`.
More than one replica still runs one container, and the counts say so.

Like a kubelet (restartPolicy Always): a container that exits, or vanishes, is recreated in the same
pod (same name, same address), at once the first time, then after a crash-loop back-off (10 s,
doubling to 300 s, forgotten after 10 minutes of running); the Pod's `restartCount`, `lastState`
and `state.waiting` (CrashLoopBackOff) say so, and `pods/NAME/log?previous=true` serves the previous
container's output. Readiness probes follow the kubelet's fields and defaults (periodSeconds 10,
timeoutSeconds 1, failureThreshold 3): a ready pod turns not ready only after failureThreshold
consecutive failures one period apart; a pod not yet ready is probed every pass (start-up is only
faster, never a ready pod less stable). Each node puts its containers under its own cgroup parent
(`/unidesk-lab/<node>/<id>`): labs on one machine name their containers alike, and a shared cgroup
let one lab's stop SIGKILL another lab's container.

A Job's container runs to its end (`ctr run` in the foreground, its exit code read back);
OnFailure/Never pods are retried up to `backoffLimit`, and the Job reports `succeeded` or `failed`
with a Complete or Failed condition.

With a pod network (`unidesk_lab.podnet`, given `--pod-cidr`/`--service-cidr`), each pod gets its own
network namespace and address, probes go to that address, Services get ClusterIPs (allocated by the
store) that forward to their ready pod, and each pod's /etc/hosts carries the cluster names. Without
one (unit tests), containers share the host network (`--net-host`), as before.

Volumes: configMap and secret (files written under the data dir), emptyDir, hostPath (under the
node's lab root, never the machine's own paths) and persistentVolumeClaim / volumeClaimTemplates
(a directory per claim; StatefulSet claims are created as bound PersistentVolumeClaim objects).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from unidesk_lab.kubeapi import DNS1123_LABEL, Resource, Store, find_resource, now_iso

log = logging.getLogger(__name__)

DEPLOYMENTS: Resource = find_resource("apps", "deployments")  # type: ignore[assignment]
STATEFULSETS: Resource = find_resource("apps", "statefulsets")  # type: ignore[assignment]
JOBS: Resource = find_resource("batch", "jobs")  # type: ignore[assignment]
CONFIGMAPS: Resource = find_resource("", "configmaps")  # type: ignore[assignment]
SECRETS: Resource = find_resource("", "secrets")  # type: ignore[assignment]
PODS: Resource = find_resource("", "pods")  # type: ignore[assignment]
SERVICES: Resource = find_resource("", "services")  # type: ignore[assignment]
PVCS: Resource = find_resource("", "persistentvolumeclaims")  # type: ignore[assignment]
WORKLOADS = {r.kind: r for r in (DEPLOYMENTS, STATEFULSETS, JOBS)}
PREFIX = "kubeapi_"  # every container this controller creates; '_' never occurs in DNS-1123 names
KIND_MARK = {"Deployment": "", "StatefulSet": "sts.", "Job": "job."}  # '.' never occurs in a namespace
LABEL = "unidesk.lab/deployment"
IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
MOUNT_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")  # no ',' or ':' (ctr's --mount syntax), no '..' below
MONITOR_INTERVAL = 0.5
STOP_GRACE = 1.0  # busybox as PID 1 ignores SIGTERM; don't wait the pod's 30 s for it
CTR_TIMEOUT = 60.0
JOB_BACKOFF_MAX = 10.0
CGROUP_ROOT = "unidesk-lab"
# The kubelet's crash-loop back-off: the first restart at once, then 10 s doubling to 300 s; reset
# once a container has run 10 minutes.
BACKOFF_INITIAL, BACKOFF_MAX, BACKOFF_RESET = 10.0, 300.0, 600.0

Key = tuple[str, str, str]  # (kind, namespace, name)


class ConfigError(Exception):
    """The pod template references something that does not exist (CreateContainerConfigError)."""


def image_candidates(ref: str) -> list[str]:
    """References under which containerd may hold `ref` (`docker save | ctr import` adds docker.io/library/)."""
    last = ref.rsplit("/", 1)[-1]
    tagged = ref if (":" in last or "@" in last) else f"{ref}:latest"
    first = tagged.split("/", 1)[0]
    has_registry = "/" in tagged and ("." in first or ":" in first or first == "localhost")
    if has_registry:
        full = tagged
    else:
        full = "docker.io/" + (tagged if "/" in tagged else f"library/{tagged}")
    short = full.removeprefix("docker.io/").removeprefix("library/")
    return list(dict.fromkeys([ref, tagged, full, short]))


def container_id(namespace: str, name: str, generation: int | str, kind: str = "Deployment") -> str:
    """containerd id for one generation of a workload (ids are limited to 76 characters)."""
    return f"{key_prefix((kind, namespace, name))}{generation}"


def key_prefix(key: Key | tuple[str, str]) -> str:
    kind, namespace, name = key if len(key) == 3 else ("Deployment", *key)  # type: ignore[misc]
    for part in (namespace, name):
        if not DNS1123_LABEL.match(part) or len(part) > 63:
            raise ValueError(f"not a DNS-1123 label: {part!r}")
    prefix = f"{PREFIX}{KIND_MARK[kind]}{namespace}_{name}_"
    if len(prefix) > 60:
        prefix = f"{PREFIX}{KIND_MARK[kind]}{hashlib.sha256(f'{namespace}/{name}'.encode()).hexdigest()[:16]}_"
    return prefix


def crash_backoff(backoff: float, ran_for: float) -> tuple[float, float]:
    """(delay before restarting a container that exited after `ran_for` s, back-off after that restart),
    given the current back-off (0: none yet), as the kubelet counts them."""
    if ran_for >= BACKOFF_RESET:
        backoff = 0.0
    return backoff, (min(backoff * 2, BACKOFF_MAX) if backoff else BACKOFF_INITIAL)


@dataclass
class Readiness:
    """A readinessProbe's verdict as the kubelet reaches it: ready after successThreshold successes in a
    row, not ready after failureThreshold failures in a row. A ready pod is probed once per
    periodSeconds; one not yet ready whenever asked (the lab only shortens start-up)."""

    period: float = 10.0
    timeout: float = 1.0
    successes_needed: int = 1
    failures_allowed: int = 3
    initial_delay: float = 0.0
    ready: bool = False
    successes: int = 0
    failures: int = 0
    last: float | None = None  # loop time of the last probe

    @classmethod
    def of(cls, probe: dict | None) -> Readiness:
        probe = probe or {}

        def num(name: str, default: float, least: float) -> float:
            value = probe.get(name, default)
            return max(float(value), least) if isinstance(value, int | float) else default

        return cls(
            period=num("periodSeconds", 10, 1),
            timeout=num("timeoutSeconds", 1, 1),
            successes_needed=int(num("successThreshold", 1, 1)),
            failures_allowed=int(num("failureThreshold", 3, 1)),
            initial_delay=num("initialDelaySeconds", 0, 0),
        )

    def due(self, now: float, started: float) -> bool:
        if now - started < self.initial_delay:
            return False
        return not self.ready or self.last is None or now - self.last >= self.period

    def record(self, now: float, ok: bool) -> bool:
        self.last = now
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            self.ready = self.ready or self.successes >= self.successes_needed
        else:
            self.successes, self.failures = 0, self.failures + 1
            self.ready = self.ready and self.failures < self.failures_allowed
        return self.ready


def max_unavailable(spec: dict, replicas: int) -> int:
    value = ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(replicas * int(value[:-1]) / 100)
    return int(value)


@dataclass
class Pod:
    """What runs for one workload: its container and the state of its latest rollout."""

    container: str | None = None  # running (or last started) container id
    generation: int = 0  # generation the controller last acted on
    image: str = ""
    probe: dict | None = None  # readinessProbe of the running container
    ports: list = field(default_factory=list)
    failure: tuple[str, str] | None = None  # (reason, message) when the latest generation could not start
    ready: bool = False
    template: dict | None = None  # pod template the running container was made from
    ip: str | None = None  # pod address on the pod network (None: host network)
    labels: dict = field(default_factory=dict)
    hostname: str | None = None
    job: asyncio.Task | None = None  # a Job's run-to-completion task
    readiness: Readiness = field(default_factory=Readiness)
    started: float = 0.0  # loop time the current container started
    # restarts, kubelet-style: lastState (how the previous container ended), restartCount, back-off
    exit_code: int | None = None
    exit_reason: str = ""
    finished_at: str = ""
    restarts: int = 0
    previous: str | None = None  # the previous container's id (its log is `previous=true`)
    backoff: float = 0.0
    restart_at: float | None = None  # loop time the next restart is due (CrashLoopBackOff until then)

    @property
    def crash_loop(self) -> tuple[str, str] | None:
        return self.failure if self.failure and self.failure[0] == "CrashLoopBackOff" else None


class LabController:
    """Reconciles Deployments, StatefulSets and Jobs in a Store into containers in one containerd namespace."""

    def __init__(
        self,
        store: Store,
        socket: str,
        namespace: str = "k8s.io",
        *,
        ctr: str = "ctr",
        log_dir: Path | None = None,
        network=None,
        data_dir: Path | None = None,
        host_root: Path | None = None,
    ) -> None:
        for value in (socket, namespace, ctr):
            if not value or value.startswith("-"):
                raise ValueError(f"refusing option-like or empty value {value!r}")
        self.store, self.socket, self.namespace, self.ctr = store, socket, namespace, ctr
        self.log_dir = log_dir
        self.network = network  # unidesk_lab.podnet.PodNetwork, or None for the host network
        self.data_dir = data_dir
        self.host_root = host_root
        self._pods: dict[Key, Pod] = {}
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._pending: set[Key] = set()
        self._tasks: list[asyncio.Task] = []
        self._http: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()  # one rollout or monitor pass at a time: status writes never interleave
        self._net_dirty = True
        node = hashlib.sha256(os.path.abspath(socket).encode()).hexdigest()[:12]  # one per lab (and test) node
        self.cgroup_parent = f"/{CGROUP_ROOT}/{node}"

    # ---- lifecycle

    async def start(self) -> None:
        """Remove leftovers of a previous run, then run every stored workload and follow changes."""
        log.info("removing leftover containers, if any")
        await self._remove_all(PREFIX)
        if self.network is not None:
            await self.network.start()
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        self.store.listeners.append(self._on_event)
        self.store.pod_log = self.pod_log
        for res in WORKLOADS.values():
            for obj in self.store.list(res):
                self._enqueue((res.kind, obj["metadata"]["namespace"], obj["metadata"]["name"]))
        self._tasks = [
            asyncio.create_task(self._worker(), name="kubecontroller-worker"),
            asyncio.create_task(self._monitor(), name="kubecontroller-monitor"),
        ]

    async def close(self) -> None:
        """Stop following the store and stop every container this controller started."""
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)
        jobs = [p.job for p in self._pods.values() if p.job]
        for task in self._tasks + jobs:
            task.cancel()
        await asyncio.gather(*self._tasks, *jobs, return_exceptions=True)
        self._tasks = []
        await self._remove_all(PREFIX)
        for key, pod in self._pods.items():  # the persisted status must not claim stopped containers serve
            if self.network is not None:
                await self.network.remove(self._pod_id(key))
            if key[0] == "Job":
                continue
            pod.container, pod.ready = None, False
            self._write_status(key, pod)
        self._pods.clear()
        for parent in [Path("/sys/fs/cgroup") / self.cgroup_parent.lstrip("/")] + list(
            Path("/sys/fs/cgroup").glob(f"*/{self.cgroup_parent.lstrip('/')}")
        ):  # the node's (now empty) cgroup parents, cgroup v2 or each v1 hierarchy
            try:
                parent.rmdir()
            except OSError:
                pass
        if self._http:
            await self._http.close()
        log.info("controller stopped")

    # ---- event intake

    def _on_event(self, event: str, res: Resource, obj: dict) -> None:
        if res == SERVICES:
            self._net_dirty = True
            return
        if res.kind not in WORKLOADS or res != WORKLOADS[res.kind]:
            return
        key = (res.kind, obj["metadata"]["namespace"], obj["metadata"]["name"])
        pod = self._pods.get(key)
        # Status writes (ours included) keep the generation, so they don't trigger a rollout.
        if event == "DELETED" or pod is None or obj["metadata"].get("generation", 1) != pod.generation:
            self._enqueue(key)

    def _enqueue(self, key: Key) -> None:
        if key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    async def _worker(self) -> None:
        while True:
            key = await self._queue.get()
            self._pending.discard(key)
            try:
                async with self._lock:
                    await self.reconcile(key)
                    await self._sync_network()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile %s %s/%s failed", *key)

    async def _monitor(self) -> None:
        """Keep status honest: task exits, readiness probes, and images that arrived after a back-off."""
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            try:
                async with self._lock:
                    await self._observe()
                    await self._sync_network()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor pass failed")

    async def _observe(self) -> None:
        pods = [(k, p) for k, p in self._pods.items() if k[0] != "Job"]
        if not pods:
            return
        tasks = await self._task_states()
        if tasks is None:  # ctr could not list the tasks (a loaded node): no evidence, no verdict
            return
        loop = asyncio.get_running_loop()
        current: list[tuple[Key, Pod, str | None]] = []
        for key, pod in pods:
            if (
                pod.failure
                and pod.failure[0] == "ImagePullBackOff"
                and pod.restart_at is None
                and await self._find_image(pod.image)
            ):
                self._enqueue(key)
                continue
            state = tasks.get(pod.container) if pod.container else None
            if pod.container and pod.restart_at is None and pod.failure is None and state in (None, "STOPPED"):
                await self._exited(key, pod, state)
            if pod.restart_at is not None and loop.time() >= pod.restart_at:
                pod = await self._restart(key, pod)
                state = "RUNNING" if pod.container and not pod.failure else None
            current.append((key, pod, state))
        now = loop.time()
        due = [(key, pod) for key, pod, state in current if state == "RUNNING" and pod.readiness.due(now, pod.started)]
        probes = await asyncio.gather(*(self._probe(pod) for _, pod in due))
        for (key, pod), probed in zip(due, probes, strict=True):
            was = pod.readiness.ready
            pod.ready = pod.readiness.record(now, probed)
            if pod.ready != was:
                self._net_dirty = True
                # readiness flips are rare and explain a later "never ready": say why in the log
                log.info(
                    "%s %s/%s: %s (probe %s, failures in a row %d)",
                    *key,
                    "ready" if pod.ready else "not ready",
                    probed,
                    pod.readiness.failures,
                )
        for key, pod, _ in current:
            self._write_status(key, pod)

    async def _exited(self, key: Key, pod: Pod, state: str | None) -> None:
        """The pod's container stopped (or vanished): lastState, then a restart now or after the back-off."""
        loop = asyncio.get_running_loop()
        cid = pod.container or ""
        if state == "STOPPED":
            pod.exit_code = await self._exit_code(cid)
            pod.exit_reason = "Completed" if pod.exit_code == 0 else "Error"
        else:  # the task is gone (deleted behind the controller's back): what a kubelet reports then
            pod.exit_code, pod.exit_reason = 137, "ContainerStatusUnknown"
        pod.finished_at = now_iso()
        if pod.ready:
            self._net_dirty = True
        pod.ready, pod.readiness = False, Readiness.of(pod.probe)
        delay, pod.backoff = crash_backoff(pod.backoff, loop.time() - pod.started)
        pod.restart_at = loop.time() + delay
        if delay:
            pod.failure = (
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={self._container_name(pod, key)} "
                f"pod={self._pod_name(key, pod)}",
            )
        log.warning(
            "%s %s/%s: container %s exited with code %s (%s); restarting %s",
            *key,
            cid,
            pod.exit_code,
            pod.exit_reason,
            f"after a {delay:g}s back-off" if delay else "now",
        )

    async def _restart(self, key: Key, pod: Pod) -> Pod:
        """Recreate the exited container in the same pod (its network namespace and address stay)."""
        obj = self.store.get(WORKLOADS[key[0]], key[1], key[2])
        if obj is None or obj["spec"].get("template") != pod.template:
            pod.restart_at = None  # deleted or rolled: the queued reconcile replaces the pod
            return pod
        new = await self._launch(key, obj, f"{pod.generation}-r{pod.restarts + 1}", detached=True, restart=pod)
        new.restarts, new.previous = pod.restarts + 1, pod.container
        new.exit_code, new.exit_reason, new.finished_at, new.backoff = (
            pod.exit_code,
            pod.exit_reason,
            pod.finished_at,
            pod.backoff,
        )
        if new.failure:  # could not start (image gone, config): try again after the back-off
            new.container, new.restarts = None, pod.restarts
            new.restart_at = asyncio.get_running_loop().time() + max(pod.backoff, BACKOFF_INITIAL)
        self._pods[key] = new
        self._net_dirty = True
        return new

    async def _sync_network(self) -> None:
        """Service rules and DNS files follow the Services and the ready pods."""
        if self.network is None or not self._net_dirty:
            return
        services = self.store.list(SERVICES)
        taken = {s["spec"].get("clusterIP") for s in services if s.get("spec")}
        for svc in services:  # created before the store allocated addresses, or kept from a lab on another slot
            ip = (svc.get("spec") or {}).get("clusterIP")
            if not ip or (ip != "None" and not self.network.owns(ip)):
                ip = self.network.allocate(taken)
                taken.add(ip)
                svc["spec"]["clusterIP"], svc["spec"]["clusterIPs"] = ip, [ip]
                self.store.update(SERVICES, svc["metadata"]["namespace"], svc["metadata"]["name"], svc)
        from unidesk_lab.podnet import Endpoint

        endpoints: dict[tuple[str, str], list] = {}
        for svc in self.store.list(SERVICES):
            selector = (svc.get("spec") or {}).get("selector") or {}
            if not selector:
                continue
            ns = svc["metadata"]["namespace"]
            for (kind, pns, _), pod in self._pods.items():
                if kind == "Job" or pns != ns or not pod.ip or not pod.ready or pod.failure:
                    continue
                if all(pod.labels.get(k) == v for k, v in selector.items()):
                    named = {p["name"]: p["containerPort"] for p in pod.ports if p.get("name")}
                    numbered = {p["containerPort"]: p["containerPort"] for p in pod.ports}
                    endpoints.setdefault((ns, svc["metadata"]["name"]), []).append(
                        Endpoint(pod.ip, {**named, **numbered}, pod.hostname)
                    )
        await self.network.sync(self.store.list(SERVICES), endpoints)
        self._net_dirty = False  # only once synced: a failed pass is retried by the next monitor pass

    # ---- reconcile

    def _pod_id(self, key: Key) -> str:
        return "/".join(key)

    async def _stop_pod(self, key: Key) -> None:
        pod = self._pods.get(key)
        if pod and pod.job:
            pod.job.cancel()
            await asyncio.gather(pod.job, return_exceptions=True)
        await self._remove_all(key_prefix(key))
        if self.network is not None:
            await self.network.remove(self._pod_id(key))
        self._net_dirty = True

    async def reconcile(self, key: Key) -> None:
        """Make the container of one workload match its latest generation and report the outcome."""
        kind, namespace, name = key
        res = WORKLOADS[kind]
        obj = self.store.get(res, namespace, name)
        if obj is None:
            log.info("%s %s/%s deleted: stopping its container", kind, namespace, name)
            await self._stop_pod(key)
            self._pods.pop(key, None)
            if kind != "Job":
                self._write_pod(key, Pod(), {})
            return
        generation = obj["metadata"].get("generation", 1)
        spec = obj["spec"]
        if kind == "Job":
            await self._reconcile_job(key, obj)
            return
        pod = self._pods.setdefault(key, Pod())
        pod.generation = generation
        if spec.get("replicas", 1) == 0:
            await self._stop_pod(key)
            self._pods[key] = Pod(generation=generation)
            self._write_status(key, self._pods[key])
            return
        if pod.container and pod.template == spec["template"] and pod.failure in (None, pod.crash_loop):
            # Only replicas (or another non-template field) changed: like a real scale, nothing restarts.
            self._write_status(key, pod)
            return
        new = await self._launch(key, obj, str(generation), detached=True)
        if (
            new.failure
            and new.container is None
            and new.failure[0] in ("ImagePullBackOff", "CreateContainerConfigError")
        ):
            # the old container (if any) keeps serving; only the failure is recorded. The Pod object is
            # now the new template's: it must not inherit the old container's exit (as on Kubernetes).
            pod.image, pod.failure, pod.exit_code = new.image, new.failure, None
            pod.restarts, pod.restart_at = 0, None
            self._write_status(key, pod)
            return
        self._pods[key] = new
        if new.container:
            tasks = await self._task_states()
            if (tasks or {}).get(new.container) == "RUNNING":
                new.ready = new.readiness.record(asyncio.get_running_loop().time(), await self._probe(new))
        self._net_dirty = True
        self._write_status(key, new)

    async def _launch(self, key: Key, obj: dict, suffix: str, *, detached: bool, restart: Pod | None = None) -> Pod:
        """Start (detached) or prepare (a Job's foreground run) the workload's container; the Pod says how it went.

        A detached start replaces the workload's running container; a failure before that leaves it.
        A restart recreates the exited container of `restart` in the same pod (same network namespace)."""
        kind, namespace, name = key
        spec = obj["spec"]
        generation = obj["metadata"].get("generation", 1)
        template = spec["template"]
        podspec = template.get("spec") or {}
        container = podspec["containers"][0]
        image = container["image"]
        labels = dict((template.get("metadata") or {}).get("labels") or {})
        pod = Pod(
            generation=generation,
            image=image,
            probe=container.get("readinessProbe"),
            readiness=Readiness.of(container.get("readinessProbe")),
            ports=container.get("ports") or [],
            template=copy.deepcopy(template),
            labels=labels,
            hostname=f"{name}-0" if kind == "StatefulSet" else None,
        )
        ref = await self._find_image(image) if IMAGE_REF.match(image) else None
        if ref is None:
            log.warning(
                "%s %s/%s: image %s not in containerd namespace %s", kind, namespace, name, image, self.namespace
            )
            pod.failure = (
                "ImagePullBackOff",
                f'Back-off pulling image "{image}": not present in containerd namespace {self.namespace}',
            )
            return pod
        try:
            mounts = self._mounts(key, obj, podspec, container, fresh=restart is None)
            argv = await self._process_args(ref, container)
            env_probe = self._resolve_env(namespace, container, "0.0.0.0")  # config errors before touching anything
        except ConfigError as exc:
            pod.failure = ("CreateContainerConfigError", str(exc))
            return pod
        if restart is not None:
            if restart.container:
                await self._remove(restart.container)  # the exited one (its log file stays: previous=true)
        elif detached:
            await self._stop_pod(key)
        cid = container_id(namespace, name, suffix, kind)
        # the node's own cgroup parent: runc's default (/<ctr namespace>/<id>) is machine-wide, shared
        # by every lab's same-named container
        args = ["run", "--cgroup", f"{self.cgroup_parent}/{cid}", "--label", f"{LABEL}={namespace}.{name}"]
        args += ["-d"] if detached else ["--rm"]
        host_network = podspec.get("hostNetwork") or self.network is None
        if host_network:
            args.append("--net-host")
            env = env_probe
        else:
            assert self.network is not None
            if restart is not None and restart.ip:
                netns, pod.ip = self.network.netns_path(self._pod_id(key)), restart.ip
            else:
                try:
                    netns, pod.ip = await self.network.add(self._pod_id(key))
                except Exception as exc:  # the network is the node's problem: report it like a sandbox failure
                    pod.failure = ("FailedCreatePodSandBox", str(exc)[:500])
                    return pod
            hosts = self.network.ensure_hosts(namespace)
            args += [
                "--with-ns",
                f"network:{netns}",
                "--mount",
                f"type=bind,src={hosts},dst=/etc/hosts,options=rbind:ro",
            ]
            env = self._resolve_env(namespace, container, pod.ip)
        for src, dst, ro in mounts:
            args += ["--mount", f"type=bind,src={src},dst={dst},options=rbind:{'ro' if ro else 'rw'}"]
        if self.log_dir and detached:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            args += ["--log-uri", f"file://{(self.log_dir / f'{cid}.log').resolve()}"]
        if container.get("workingDir"):
            args += ["--cwd", container["workingDir"]]
        # Values go through a private env file, not argv: secrets stay out of `ps` and out of logs.
        fd, env_file = tempfile.mkstemp(prefix="kubeapi-env-")
        with os.fdopen(fd, "w") as fh:
            for env_name, value in env:
                if "\n" in value:
                    args += ["--env", f"{env_name}={value}"]  # the env file is line-based
                else:
                    fh.write(f"{env_name}={value}\n")
        args += ["--env-file", env_file]
        pod.container = cid
        if not detached:
            pod.template = {"args": args, "ref": ref, "argv": argv, "env_file": env_file}  # the Job runner's recipe
            return pod
        log.info(
            "%s %s/%s generation %d: starting %s from %s: %s",
            kind,
            namespace,
            name,
            generation,
            cid,
            ref,
            argv or "(image default)",
        )
        try:
            rc, _, err = await self._ctr(*args, ref, cid, *argv, quiet=True)
        finally:
            os.unlink(env_file)
        pod.template = copy.deepcopy(template)
        pod.started = asyncio.get_running_loop().time()
        if rc != 0:
            pod.container = None
            pod.failure = ("RunContainerError", f"ctr run failed: {err.strip()[:500]}")
            await self._remove(cid)
        return pod

    def _resolve_env(self, namespace: str, container: dict, pod_ip: str = "127.0.0.1") -> list[tuple[str, str]]:
        env: list[tuple[str, str]] = []
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            for ref_field, res in (("configMapRef", CONFIGMAPS), ("secretRef", SECRETS)):
                ref = source.get(ref_field)
                if ref:
                    data = self._ref_data(res, namespace, ref["name"], ref.get("optional", False))
                    env += [(prefix + k, v) for k, v in sorted(data.items())]
        for item in container.get("env") or []:
            name = item["name"]
            if "=" in name or not name:
                raise ConfigError(f"invalid environment variable name {name!r}")
            source = item.get("valueFrom")
            if not source:
                env.append((name, str(item.get("value", ""))))
                continue
            for ref_field, res in (("configMapKeyRef", CONFIGMAPS), ("secretKeyRef", SECRETS)):
                ref = source.get(ref_field)
                if ref:
                    optional = ref.get("optional", False)
                    data = self._ref_data(res, namespace, ref["name"], optional)
                    if ref["key"] in data:
                        env.append((name, data[ref["key"]]))
                    elif not optional:
                        raise ConfigError(f"couldn't find key {ref['key']} in {res.kind} {namespace}/{ref['name']}")
                    break
            else:
                path = (source.get("fieldRef") or {}).get("fieldPath")
                fields = {
                    "metadata.namespace": namespace,
                    "metadata.name": container["name"],
                    "status.podIP": pod_ip,
                    "status.hostIP": "127.0.0.1",
                    "spec.nodeName": "d601",
                }
                if path not in fields:
                    raise ConfigError(f"unsupported valueFrom for {name} in the lab")
                env.append((name, fields[path]))
        return env

    def _ref_data(self, res: Resource, namespace: str, name: str, optional: bool) -> dict[str, str]:
        obj = self.store.get(res, namespace, name)
        if obj is None:
            if optional:
                return {}
            raise ConfigError(f'{res.kind.lower()} "{name}" not found')
        if res == SECRETS:
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    async def _process_args(self, ref: str, container: dict) -> list[str]:
        """Kubernetes command/args semantics on top of `ctr run`, which takes one full argv."""
        command, args = container.get("command"), container.get("args")
        if command:
            argv = list(command) + list(args or [])
        elif args:
            config = await self.image_config(ref)
            argv = list(config.get("Entrypoint") or []) + list(args)
        else:
            return []
        if not all(isinstance(a, str) for a in argv) or not argv or argv[0].startswith("-"):
            raise ConfigError(f"invalid command {argv!r}")
        return argv

    # ---- status

    def _write_status(self, key: Key, pod: Pod) -> None:
        kind, namespace, name = key
        if kind == "StatefulSet":
            self._write_sts_status(key, pod)
            return
        obj = self.store.get(DEPLOYMENTS, namespace, name)
        if obj is None:
            return
        spec = obj["spec"]
        want = spec.get("replicas", 1)
        old = obj.get("status") or {}
        rs = f"{name}-{pod.generation}"
        running_current = pod.container is not None and pod.failure is None
        if pod.failure:  # the new "replica" exists but never becomes ready; an old container may still serve
            updated = 1 if want else 0
            ready = 1 if pod.ready else 0
            total = updated + ready
            available = ready
        else:
            updated = 1 if running_current and want else 0
            ready = available = 1 if pod.ready and want else 0
            total = updated
        status: dict = {"observedGeneration": pod.generation}
        for field_name, value in (
            ("replicas", total),
            ("updatedReplicas", updated),
            ("readyReplicas", ready),
            ("availableReplicas", available),
            ("unavailableReplicas", max(max(total, want) - available, 0)),
        ):
            if value:
                status[field_name] = value
        if available >= want - max_unavailable(spec, want):
            avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            avail = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        if pod.failure:
            prog = ("False", pod.failure[0], pod.failure[1])
        elif available >= want:
            prog = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{rs}" has successfully progressed.')
        else:
            prog = ("True", "ReplicaSetUpdated", f'ReplicaSet "{rs}" is progressing.')
        previous = {c.get("type"): c for c in old.get("conditions") or []}
        status["conditions"] = [
            _condition(previous.get("Available"), "Available", *avail),
            _condition(previous.get("Progressing"), "Progressing", *prog),
        ]
        self.store.write_status(DEPLOYMENTS, namespace, name, status)
        self._write_pod(key, pod, obj)

    # ---- pods: one Pod object per Deployment or StatefulSet, its status saying how the container runs or ended

    @staticmethod
    def pod_name(name: str, generation: int) -> str:
        return f"{name}-{generation}"

    def _pod_name(self, key: Key, pod: Pod) -> str:
        """A Deployment's pod is named after its generation (a new template, a new pod); a StatefulSet's is `<name>-0`."""
        return f"{key[2]}-0" if key[0] == "StatefulSet" else self.pod_name(key[2], pod.generation)

    @staticmethod
    def _container_name(pod: Pod, key: Key) -> str:
        containers = ((pod.template or {}).get("spec") or {}).get("containers") or [{}]
        return containers[0].get("name") or key[2]

    def _write_pod(self, key: Key, pod: Pod, owner_obj: dict) -> None:
        """The workload's current pod as a Pod object (labels and annotations from its template,
        containerStatuses as a kubelet reports them: state, lastState, restartCount), so a rollout
        watcher reads what it reads on a real cluster; older ones are deleted."""
        kind, namespace, name = key
        owner = f"{KIND_MARK[kind]}{namespace}.{name}"[:63]
        current = self._pod_name(key, pod) if (pod.container or pod.failure) else None
        for old in self.store.list(PODS, namespace, lambda o: (o["metadata"].get("labels") or {}).get(LABEL) == owner):
            if old["metadata"]["name"] != current:
                self.store.delete(PODS, namespace, old["metadata"]["name"])
        if current is None:
            return
        crashing = pod.crash_loop is not None or pod.restart_at is not None
        template = pod.template if pod.template and (not pod.failure or crashing) else owner_obj["spec"]["template"]
        container = ((template.get("spec") or {}).get("containers") or [{}])[0]
        if self.store.get(PODS, namespace, current) is None:
            meta = template.get("metadata") or {}
            self.store.create(
                PODS,
                namespace,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": current,
                        "namespace": namespace,
                        "labels": {**(meta.get("labels") or {}), LABEL: owner},
                        "annotations": dict(meta.get("annotations") or {}),
                        "ownerReferences": [
                            {
                                "apiVersion": "apps/v1",
                                "kind": kind,
                                "name": name,
                                "uid": owner_obj["metadata"].get("uid", ""),
                                "controller": True,
                            }
                        ],
                    },
                    "spec": copy.deepcopy(template.get("spec") or {}),
                },
            )
        cname = container.get("name") or name
        cs: dict = {
            "name": cname,
            "image": container.get("image", pod.image),
            "imageID": "",
            "ready": pod.ready,
            "restartCount": pod.restarts,
            "started": False,
            "state": {},
        }
        if pod.exit_code is not None:
            cs["lastState"] = {
                "terminated": {"exitCode": pod.exit_code, "reason": pod.exit_reason, "finishedAt": pod.finished_at}
            }
        if pod.failure:
            cs["state"] = {"waiting": {"reason": pod.failure[0], "message": pod.failure[1]}}
        elif pod.container:
            cs["state"], cs["started"] = {"running": {}}, True
        phase = "Running" if pod.container and (pod.failure is None or crashing) else "Pending"
        status: dict = {
            "phase": phase,
            "conditions": [{"type": "Ready", "status": "True" if pod.ready else "False"}],
            "containerStatuses": [cs],
        }
        if pod.ip:
            status["podIP"] = pod.ip
        self.store.write_status(PODS, namespace, current, status)

    def pod_log(self, namespace: str, pod_name: str, tail: int | None, previous: bool = False) -> str | None:
        """The output of the container behind a Pod object (its log file), the last `tail` lines;
        `previous`: of the container before the last restart (None when there was none)."""
        for key, pod in self._pods.items():
            if key[0] == "Job" or key[1] != namespace or self._pod_name(key, pod) != pod_name or not self.log_dir:
                continue
            # previous: the last container that ended (the current one itself while it waits to restart)
            cid = (pod.container if pod.restart_at is not None else pod.previous) if previous else pod.container
            if not cid:
                return None
            try:
                lines = (self.log_dir / f"{cid}.log").read_text(errors="replace").splitlines()
            except FileNotFoundError:
                return ""
            return "".join(f"{line}\n" for line in (lines[-tail:] if tail else ([] if tail == 0 else lines)))
        return None

    async def _exit_code(self, cid: str) -> int | None:
        """The exit code of a stopped task, read by deleting it (ctr 1.6 lists no exit status; `tasks
        delete` warns `exit with non-zero exit code N`)."""
        rc, _, err = await self._ctr("tasks", "delete", cid)
        found = re.search(r"exit code (\d+)", err)
        return int(found.group(1)) if found else (0 if rc == 0 else None)

    def _write_sts_status(self, key: Key, pod: Pod) -> None:
        _, namespace, name = key
        obj = self.store.get(STATEFULSETS, namespace, name)
        if obj is None:
            return
        want = obj["spec"].get("replicas", 1)
        running = 1 if pod.container and (pod.failure is None or pod.crash_loop) and want else 0
        ready = 1 if running and pod.ready else 0
        revision = f"{name}-{hashlib.sha256(json.dumps(pod.template or {}, sort_keys=True).encode()).hexdigest()[:10]}"
        status: dict = {
            "observedGeneration": pod.generation,
            "replicas": running,
            "collisionCount": 0,
            "currentRevision": revision,
            "updateRevision": revision,
        }
        for field_name, value in (
            ("readyReplicas", ready),
            ("currentReplicas", running),
            ("updatedReplicas", running),
            ("availableReplicas", ready),
        ):
            if value:
                status[field_name] = value
        self.store.write_status(STATEFULSETS, namespace, name, status)
        self._write_pod(key, pod, obj)

    # ---- jobs

    async def _reconcile_job(self, key: Key, obj: dict) -> None:
        """A Job runs once to its end; a finished or running one is left alone (its template is immutable)."""
        pod = self._pods.get(key)
        status = obj.get("status") or {}
        if pod is not None and pod.job is not None:
            return
        if any(
            c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
            for c in status.get("conditions") or []
        ):
            self._pods[key] = Pod(generation=obj["metadata"].get("generation", 1))
            return
        pod = self._pods[key] = Pod(generation=obj["metadata"].get("generation", 1))
        pod.job = asyncio.create_task(self._run_job(key), name=f"job-{key[1]}-{key[2]}")

    async def _run_job(self, key: Key) -> None:
        """Run the Job's pod until one attempt exits 0 or the back-off limit is spent."""
        kind, namespace, name = key
        failed, attempt = 0, 0
        started = now_iso()
        while True:
            obj = self.store.get(JOBS, namespace, name)
            if obj is None:
                return
            limit = int(obj["spec"].get("backoffLimit", 6))
            self._job_status(key, {"startTime": started, "active": 1, **({"failed": failed} if failed else {})})
            attempt += 1
            async with self._lock:
                pod = await self._launch(key, obj, f"{obj['metadata'].get('generation', 1)}-{attempt}", detached=False)
            if pod.container is None or pod.failure:
                reason, message = pod.failure or ("RunContainerError", "no container")
                rc, why = None, f"{reason}: {message}"
            else:
                rc, why = await self._run_foreground(key, pod), None
                why = None if rc == 0 else f"container exited with code {rc}"
            if self.network is not None:
                await self.network.remove(self._pod_id(key))
            if rc == 0:
                log.info("job %s/%s complete after %d attempt(s)", namespace, name, attempt)
                self._job_status(
                    key,
                    {
                        "startTime": started,
                        "completionTime": now_iso(),
                        "succeeded": 1,
                        **({"failed": failed} if failed else {}),
                        "conditions": [_job_condition("Complete", "", "")],
                    },
                )
                return
            failed += 1
            log.warning("job %s/%s attempt %d failed: %s", namespace, name, attempt, why)
            if failed > limit:
                self._job_status(
                    key,
                    {
                        "startTime": started,
                        "failed": failed,
                        "conditions": [
                            _job_condition(
                                "Failed", "BackoffLimitExceeded", f"Job has reached the specified backoff limit ({why})"
                            )
                        ],
                    },
                )
                return
            await asyncio.sleep(min(2.0 ** (failed - 1), JOB_BACKOFF_MAX))

    async def _run_foreground(self, key: Key, pod: Pod) -> int:
        recipe = pod.template or {}
        cid = pod.container or ""
        out = open(self.log_dir / f"{cid}.log", "ab") if self.log_dir else None
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            proc = await asyncio.create_subprocess_exec(
                self.ctr,
                "-a",
                self.socket,
                "-n",
                self.namespace,
                *recipe["args"],
                recipe["ref"],
                cid,
                *recipe["argv"],
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out or asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                return await proc.wait()
            except asyncio.CancelledError:
                await self._remove(cid)
                raise
        finally:
            os.unlink(recipe["env_file"])
            if out:
                out.close()
            await self._remove(cid)  # --rm does it; a killed run leaves it

    def _job_status(self, key: Key, status: dict) -> None:
        self.store.write_status(JOBS, key[1], key[2], status)

    # ---- volumes

    def _mounts(
        self, key: Key, obj: dict, podspec: dict, container: dict, *, fresh: bool = True
    ) -> list[tuple[str, str, bool]]:
        """(host dir or file, container path, read-only) for each volumeMount of the container; an
        emptyDir starts empty with a new pod (`fresh`), and keeps its files across container restarts."""
        kind, namespace, name = key
        volumes = {v.get("name"): v for v in podspec.get("volumes") or [] if isinstance(v, dict)}
        claims = {}
        if kind == "StatefulSet":
            for tmpl in obj["spec"].get("volumeClaimTemplates") or []:
                tname = (tmpl.get("metadata") or {}).get("name")
                claims[tname] = self._claim(namespace, f"{tname}-{name}-0", tmpl.get("spec") or {}, name)
        out = []
        for vm in container.get("volumeMounts") or []:
            vname, path = vm.get("name"), vm.get("mountPath", "")
            if not MOUNT_PATH.match(path) or ".." in path.split("/"):
                raise ConfigError(f"volumeMount {vname}: unsupported mountPath {path!r} in the lab")
            if vname in claims:
                src = claims[vname]
            elif vname in volumes:
                src = self._volume(key, volumes[vname], fresh)
            else:
                raise ConfigError(f'volume "{vname}" not found')
            sub = vm.get("subPath")
            if sub:
                if not MOUNT_PATH.match("/" + sub) or ".." in sub.split("/"):
                    raise ConfigError(f"volumeMount {vname}: unsupported subPath {sub!r}")
                src = src / sub
            out.append((str(src), path, bool(vm.get("readOnly"))))
        return out

    def _volume_root(self, key: Key) -> Path:
        base = self.data_dir or Path(tempfile.gettempdir()) / "kubeapi-volumes"
        return base / "volumes" / key_prefix(key).rstrip("_")

    def _volume(self, key: Key, volume: dict, fresh: bool = True) -> Path:
        kind, namespace, name = key
        vname = volume["name"]
        if not DNS1123_LABEL.match(vname or ""):
            raise ConfigError(f"invalid volume name {vname!r}")
        target = self._volume_root(key) / vname
        for field_name, res, ref_key in (("configMap", CONFIGMAPS, "name"), ("secret", SECRETS, "secretName")):
            source = volume.get(field_name)
            if source is None:
                continue
            data = self._ref_data(res, namespace, source.get(ref_key, ""), source.get("optional", False))
            items = source.get("items") or [{"key": k, "path": k} for k in data]
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for item in items:
                rel = item.get("path") or item["key"]
                if item["key"] not in data or ".." in rel.split("/") or rel.startswith("/"):
                    raise ConfigError(f"{field_name} {source.get(ref_key)}: no key {item['key']!r}")
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(data[item["key"]])
                path.chmod(item.get("mode") or source.get("defaultMode") or 0o644)
            return target
        if "emptyDir" in volume:
            if fresh:
                shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
            return target
        if "hostPath" in volume:
            host_path = (volume["hostPath"] or {}).get("path", "")
            if not MOUNT_PATH.match(host_path) or ".." in host_path.split("/") or self.host_root is None:
                raise ConfigError(f"hostPath {host_path!r} is not available in the lab")
            src = self.host_root / host_path.lstrip("/")  # the node's own filesystem root in the lab
            if (volume["hostPath"] or {}).get("type", "DirectoryOrCreate") in ("DirectoryOrCreate", "", "Directory"):
                src.mkdir(parents=True, exist_ok=True)
            return src
        if "persistentVolumeClaim" in volume:
            claim = (volume["persistentVolumeClaim"] or {}).get("claimName", "")
            if self.store.get(PVCS, namespace, claim) is None:
                raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
            return self._claim(namespace, claim, None, None)
        raise ConfigError(
            f"volume {vname}: only configMap, secret, emptyDir, hostPath and persistentVolumeClaim run in the lab"
        )

    def _claim(self, namespace: str, claim: str, spec: dict | None, owner: str | None) -> Path:
        """The directory behind a claim; a StatefulSet's template claim becomes a bound PVC object."""
        if not DNS1123_LABEL.match(claim):
            raise ConfigError(f"invalid claim name {claim!r}")
        if spec is not None and self.store.get(PVCS, namespace, claim) is None:
            body = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace, "labels": {"app": owner or claim}},
                "spec": {**copy.deepcopy(spec), "volumeName": f"pvc-{claim}", "storageClassName": "local-path"},
            }
            self.store.create(PVCS, namespace, body)
            self.store.write_status(
                PVCS,
                namespace,
                claim,
                {
                    "phase": "Bound",
                    "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                    "capacity": {
                        "storage": ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
                    },
                },
            )
        base = self.data_dir or Path(tempfile.gettempdir()) / "kubeapi-volumes"
        path = base / "pv" / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    # ---- containerd

    async def _ctr(self, *args: str, quiet: bool = False) -> tuple[int, str, str]:
        argv = [self.ctr, "-a", self.socket, "-n", self.namespace, *args]
        if not quiet:
            log.debug("exec %s", argv)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CTR_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            return 124, "", f"ctr {args[0]} timed out"
        except asyncio.CancelledError:  # shutdown: don't leave a ctr behind that creates containers later
            proc.kill()
            raise
        return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def _find_image(self, image: str) -> str | None:
        rc, out, err = await self._ctr("images", "ls", "-q")
        if rc != 0:
            log.warning("ctr images ls failed: %s", err.strip())
            return None
        present = set(out.split())
        return next((c for c in image_candidates(image) if c in present), None)

    async def image_config(self, ref: str) -> dict:
        """The image's OCI config (`config` section), read from the content store (ctr 1.6 has no inspect)."""
        rc, out, _ = await self._ctr("images", "ls")
        digest = None
        for line in out.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == ref and len(cols) > 2:
                digest = cols[2]
        if not digest:
            raise ConfigError(f"image {ref} not found")
        doc = await self._content(digest)
        if "manifests" in doc:  # an index: take the linux/amd64 (or only) manifest
            manifests = doc["manifests"]
            chosen = next(
                (m for m in manifests if (m.get("platform") or {}).get("architecture") == "amd64"), manifests[0]
            )
            doc = await self._content(chosen["digest"])
        config = await self._content(doc["config"]["digest"])
        return config.get("config") or {}

    async def _content(self, digest: str) -> dict:
        if not re.match(r"^sha256:[0-9a-f]{64}$", digest):
            raise ConfigError(f"bad digest {digest!r}")
        rc, out, err = await self._ctr("content", "get", digest)
        if rc != 0:
            raise ConfigError(f"content {digest} unreadable: {err.strip()}")
        return json.loads(out)

    async def _containers(self) -> list[str]:
        rc, out, err = await self._ctr("containers", "ls", "-q")
        if rc != 0:
            log.warning("ctr containers ls failed: %s", err.strip())
            return []
        return out.split()

    async def _task_states(self) -> dict[str, str] | None:
        """Task states by container id; None when ctr could not list them."""
        rc, out, err = await self._ctr("tasks", "ls")
        if rc != 0:
            log.warning("ctr tasks ls failed: %s", err.strip())
            return None
        states = {}
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3:
                states[cols[0]] = cols[2]
        return states

    async def _remove_all(self, prefix: str) -> None:
        """Stop every container whose id starts with `prefix`, concurrently (each may use its grace period)."""
        await asyncio.gather(*(self._remove(cid) for cid in await self._containers() if cid.startswith(prefix)))

    async def _remove(self, cid: str) -> None:
        """SIGTERM, a short grace, then force: the task, then the container and its snapshot."""
        log.info("stopping container %s", cid)
        await self._ctr("tasks", "kill", "-s", "SIGTERM", cid)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        while loop.time() < deadline and ((await self._task_states()) or {}).get(cid) == "RUNNING":
            await asyncio.sleep(0.1)
        await self._ctr("tasks", "delete", "-f", cid)
        rc, _, err = await self._ctr("containers", "delete", cid)
        if rc != 0 and "not found" not in err:
            log.warning("could not delete container %s: %s", cid, err.strip())

    async def _probe(self, pod: Pod) -> bool:
        """readinessProbe (httpGet or tcpSocket) on the pod's address (127.0.0.1 on the host network)."""
        probe = pod.probe or {}
        target = probe.get("httpGet") or probe.get("tcpSocket")
        if not target:
            return True  # no probe, or exec probes: ready once running
        port = target.get("port")
        if isinstance(port, str) and not port.isdigit():
            port = next((p.get("containerPort") for p in pod.ports if p.get("name") == port), None)
        if port is None:
            return False
        host = pod.ip or "127.0.0.1"
        try:
            if "httpGet" in probe:
                assert self._http is not None
                path = target.get("path", "/")
                timeout = aiohttp.ClientTimeout(total=pod.readiness.timeout)
                async with self._http.get(f"http://{host}:{int(port)}{path}", timeout=timeout) as resp:
                    return 200 <= resp.status < 400
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), pod.readiness.timeout)
            writer.close()
            return True
        except (TimeoutError, OSError, aiohttp.ClientError):
            return False


def _job_condition(ctype: str, reason: str, message: str) -> dict:
    stamp = now_iso()
    cond = {"type": ctype, "status": "True", "lastProbeTime": stamp, "lastTransitionTime": stamp}
    if reason:
        cond.update(reason=reason, message=message)
    return cond


def _condition(previous: dict | None, ctype: str, status: str, reason: str, message: str) -> dict:
    """A Deployment condition; timestamps move only when the condition changes, so unchanged status is a no-op."""
    if previous and (previous.get("status"), previous.get("reason"), previous.get("message")) == (
        status,
        reason,
        message,
    ):
        return copy.deepcopy(previous)
    stamp = now_iso()
    transition = previous.get("lastTransitionTime", stamp) if previous and previous.get("status") == status else stamp
    return {
        "type": ctype,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    }
