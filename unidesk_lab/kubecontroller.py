"""Lab controller for the Kubernetes API emulator: runs each Deployment as one real containerd container via `ctr`.

Pod-less on purpose: no Pod or ReplicaSet objects exist. For every Deployment generation the
controller checks the first container's image in containerd, replaces the running container
(`ctr run -d --net-host`) and reports the outcome in the Deployment's status the way the real
deployment controller would (observedGeneration, replica counts, Available/Progressing
conditions). A missing image keeps the old container and reports `ImagePullBackOff`. More than one
replica still runs one container, and the counts say so.
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
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from unidesk_lab.kubeapi import DNS1123_LABEL, Resource, Store, find_resource, now_iso

log = logging.getLogger(__name__)

DEPLOYMENTS: Resource = find_resource("apps", "deployments")  # type: ignore[assignment]
CONFIGMAPS: Resource = find_resource("", "configmaps")  # type: ignore[assignment]
SECRETS: Resource = find_resource("", "secrets")  # type: ignore[assignment]
PREFIX = "kubeapi_"  # every container this controller creates; '_' never occurs in DNS-1123 names
LABEL = "unidesk.lab/deployment"
IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]*$")
MONITOR_INTERVAL = 1.0
STOP_GRACE = 1.0  # busybox as PID 1 ignores SIGTERM; don't wait the pod's 30 s for it
CTR_TIMEOUT = 60.0

Key = tuple[str, str]  # (namespace, deployment name)


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


def container_id(namespace: str, name: str, generation: int) -> str:
    """containerd id for one generation of a Deployment (ids are limited to 76 characters)."""
    return f"{key_prefix((namespace, name))}{generation}"


def key_prefix(key: Key) -> str:
    namespace, name = key
    for part in key:
        if not DNS1123_LABEL.match(part) or len(part) > 63:
            raise ValueError(f"not a DNS-1123 label: {part!r}")
    prefix = f"{PREFIX}{namespace}_{name}_"
    if len(prefix) > 60:
        prefix = f"{PREFIX}{hashlib.sha256(f'{namespace}/{name}'.encode()).hexdigest()[:16]}_"
    return prefix


def max_unavailable(spec: dict, replicas: int) -> int:
    value = ((spec.get("strategy") or {}).get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return math.floor(replicas * int(value[:-1]) / 100)
    return int(value)


@dataclass
class Pod:
    """What runs for one Deployment: its container and the state of its latest rollout."""

    container: str | None = None  # running (or last started) container id
    generation: int = 0  # generation the controller last acted on
    image: str = ""
    probe: dict | None = None  # readinessProbe of the running container
    ports: list = field(default_factory=list)
    failure: tuple[str, str] | None = None  # (reason, message) when the latest generation could not start
    ready: bool = False
    template: dict | None = None  # pod template the running container was made from


class LabController:
    """Reconciles Deployments in a Store into containers in one containerd namespace."""

    def __init__(self, store: Store, socket: str, namespace: str = "k8s.io", *, ctr: str = "ctr",
                 log_dir: Path | None = None) -> None:
        for value in (socket, namespace, ctr):
            if not value or value.startswith("-"):
                raise ValueError(f"refusing option-like or empty value {value!r}")
        self.store, self.socket, self.namespace, self.ctr = store, socket, namespace, ctr
        self.log_dir = log_dir
        self._pods: dict[Key, Pod] = {}
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._pending: set[Key] = set()
        self._tasks: list[asyncio.Task] = []
        self._http: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()  # one rollout or monitor pass at a time: status writes never interleave

    # ---- lifecycle

    async def start(self) -> None:
        """Remove leftovers of a previous run, then run every stored Deployment and follow changes."""
        log.info("removing leftover containers, if any")
        await self._remove_all(PREFIX)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        self.store.listeners.append(self._on_event)
        for dep in self.store.list(DEPLOYMENTS):
            self._enqueue((dep["metadata"]["namespace"], dep["metadata"]["name"]))
        self._tasks = [asyncio.create_task(self._worker(), name="kubecontroller-worker"),
                       asyncio.create_task(self._monitor(), name="kubecontroller-monitor")]

    async def close(self) -> None:
        """Stop following the store and stop every container this controller started."""
        if self._on_event in self.store.listeners:
            self.store.listeners.remove(self._on_event)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._remove_all(PREFIX)
        for key, pod in self._pods.items():  # the persisted status must not claim stopped containers serve
            pod.container, pod.ready = None, False
            self._write_status(key, pod)
        self._pods.clear()
        if self._http:
            await self._http.close()
        log.info("controller stopped")

    # ---- event intake

    def _on_event(self, event: str, res: Resource, obj: dict) -> None:
        if res != DEPLOYMENTS:
            return
        key = (obj["metadata"]["namespace"], obj["metadata"]["name"])
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
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconcile %s/%s failed", *key)

    async def _monitor(self) -> None:
        """Keep status honest: task exits, readiness probes, and images that arrived after a back-off."""
        while True:
            await asyncio.sleep(MONITOR_INTERVAL)
            try:
                async with self._lock:
                    await self._observe()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("monitor pass failed")

    async def _observe(self) -> None:
        if not self._pods:
            return
        tasks = await self._task_states()
        pods = list(self._pods.items())
        states = [tasks.get(pod.container) if pod.container else None for _, pod in pods]
        probes = await asyncio.gather(*(self._probe(pod) if state == "RUNNING" else _false()
                                        for (_, pod), state in zip(pods, states)))
        for (key, pod), state, probed in zip(pods, states, probes):
            if pod.failure and pod.failure[0] == "ImagePullBackOff" and await self._find_image(pod.image):
                self._enqueue(key)
                continue
            pod.ready = probed
            if state == "STOPPED" and pod.failure is None:
                pod.failure = ("CrashLoopBackOff", f"container {pod.container} exited")
            self._write_status(key, pod)

    # ---- reconcile

    async def reconcile(self, key: Key) -> None:
        """Make the containers of one Deployment match its latest generation and report the outcome."""
        namespace, name = key
        prefix = key_prefix(key)
        obj = self.store.get(DEPLOYMENTS, namespace, name)
        if obj is None:
            log.info("deployment %s/%s deleted: stopping its container", namespace, name)
            await self._remove_all(prefix)
            self._pods.pop(key, None)
            return
        generation = obj["metadata"].get("generation", 1)
        spec = obj["spec"]
        pod = self._pods.setdefault(key, Pod())
        pod.generation = generation
        if spec.get("replicas", 1) == 0:
            await self._remove_all(prefix)
            self._pods[key] = Pod(generation=generation)
            self._write_status(key, self._pods[key])
            return
        if pod.container and pod.failure is None and pod.template == spec["template"]:
            # Only replicas (or another non-template field) changed: like a real scale, nothing restarts.
            self._write_status(key, pod)
            return
        container = spec["template"]["spec"]["containers"][0]
        image = container["image"]
        ref = await self._find_image(image) if IMAGE_REF.match(image) else None
        if ref is None:
            log.warning("deployment %s/%s: image %s not in containerd namespace %s", namespace, name, image,
                        self.namespace)
            pod.image = image
            pod.failure = ("ImagePullBackOff", f'Back-off pulling image "{image}": not present in containerd '
                                               f"namespace {self.namespace}")
            self._write_status(key, pod)
            return
        try:
            env = self._resolve_env(namespace, container)
            argv = await self._process_args(ref, container)
        except ConfigError as exc:
            pod.image, pod.failure = image, ("CreateContainerConfigError", str(exc))
            self._write_status(key, pod)
            return
        await self._remove_all(prefix)
        cid = container_id(namespace, name, generation)
        args = ["run", "-d", "--net-host", "--label", f"{LABEL}={namespace}.{name}"]
        if self.log_dir:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            args += ["--log-uri", f"file://{(self.log_dir / f'{cid}.log').resolve()}"]
        if container.get("workingDir"):
            args += ["--cwd", container["workingDir"]]
        # Values go through a private env file, not argv: secrets stay out of `ps` and out of logs.
        fd, env_file = tempfile.mkstemp(prefix="kubeapi-env-")
        try:
            with os.fdopen(fd, "w") as fh:
                for env_name, value in env:
                    if "\n" in value:
                        args += ["--env", f"{env_name}={value}"]  # the env file is line-based
                    else:
                        fh.write(f"{env_name}={value}\n")
            args += ["--env-file", env_file]
            log.info("deployment %s/%s generation %d: starting %s from %s: %s", namespace, name, generation, cid,
                     ref, argv or "(image default)")
            rc, _, err = await self._ctr(*args, ref, cid, *argv, quiet=True)
        finally:
            os.unlink(env_file)
        self._pods[key] = pod = Pod(container=cid, generation=generation, image=image,
                                    probe=container.get("readinessProbe"), ports=container.get("ports") or [],
                                    template=copy.deepcopy(spec["template"]))
        if rc != 0:
            pod.container = None
            pod.failure = ("RunContainerError", f"ctr run failed: {err.strip()[:500]}")
            await self._remove(cid)
        else:
            tasks = await self._task_states()
            pod.ready = tasks.get(cid) == "RUNNING" and await self._probe(pod)
        self._write_status(key, pod)

    def _resolve_env(self, namespace: str, container: dict) -> list[tuple[str, str]]:
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
                        raise ConfigError(f'couldn\'t find key {ref["key"]} in {res.kind} {namespace}/{ref["name"]}')
                    break
            else:
                path = (source.get("fieldRef") or {}).get("fieldPath")
                fields = {"metadata.namespace": namespace, "metadata.name": container["name"],
                          "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1", "spec.nodeName": "d601"}
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
        namespace, name = key
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
        for field_name, value in (("replicas", total), ("updatedReplicas", updated), ("readyReplicas", ready),
                                  ("availableReplicas", available),
                                  ("unavailableReplicas", max(max(total, want) - available, 0))):
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
        status["conditions"] = [_condition(previous.get("Available"), "Available", *avail),
                                _condition(previous.get("Progressing"), "Progressing", *prog)]
        self.store.write_status(DEPLOYMENTS, namespace, name, status)

    # ---- containerd

    async def _ctr(self, *args: str, quiet: bool = False) -> tuple[int, str, str]:
        argv = [self.ctr, "-a", self.socket, "-n", self.namespace, *args]
        if not quiet:
            log.debug("exec %s", argv)
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE,
                                                    stdin=asyncio.subprocess.DEVNULL)
        try:
            out, err = await asyncio.wait_for(proc.communicate(), CTR_TIMEOUT)
        except asyncio.TimeoutError:
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
            chosen = next((m for m in manifests if (m.get("platform") or {}).get("architecture") == "amd64"),
                          manifests[0])
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

    async def _task_states(self) -> dict[str, str]:
        rc, out, _ = await self._ctr("tasks", "ls")
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
        while loop.time() < deadline and (await self._task_states()).get(cid) == "RUNNING":
            await asyncio.sleep(0.1)
        await self._ctr("tasks", "delete", "-f", cid)
        rc, _, err = await self._ctr("containers", "delete", cid)
        if rc != 0 and "not found" not in err:
            log.warning("could not delete container %s: %s", cid, err.strip())

    async def _probe(self, pod: Pod) -> bool:
        """readinessProbe (httpGet or tcpSocket on 127.0.0.1: containers share the host network)."""
        probe = pod.probe or {}
        target = probe.get("httpGet") or probe.get("tcpSocket")
        if not target:
            return True  # no probe, or exec probes: ready once running
        port = target.get("port")
        if isinstance(port, str) and not port.isdigit():
            port = next((p.get("containerPort") for p in pod.ports if p.get("name") == port), None)
        if port is None:
            return False
        try:
            if "httpGet" in probe:
                assert self._http is not None
                path = target.get("path", "/")
                async with self._http.get(f"http://127.0.0.1:{int(port)}{path}") as resp:
                    return 200 <= resp.status < 400
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", int(port)), 1.0)
            writer.close()
            return True
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError):
            return False


async def _false() -> bool:
    return False


def _condition(previous: dict | None, ctype: str, status: str, reason: str, message: str) -> dict:
    """A Deployment condition; timestamps move only when the condition changes, so unchanged status is a no-op."""
    if previous and (previous.get("status"), previous.get("reason"), previous.get("message")) == (status, reason,
                                                                                                  message):
        return copy.deepcopy(previous)
    stamp = now_iso()
    transition = previous.get("lastTransitionTime", stamp) if previous and previous.get("status") == status else stamp
    return {"type": ctype, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": transition,
            "reason": reason, "message": message}
