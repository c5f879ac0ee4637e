"""`k3sctl-managed` apply steps: build on the control target, import into native k3s containerd,
apply the service's narrowed manifest into its namespace, wait for the rollout, verify.

The kubeconfig and containerd socket are the node's own (targets[].k3s); the manifest comes from
the deployed commit in the target's mirror. A k3s running inside Docker is refused.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import yaml

from executors.containerd import ctr_argv, import_image, service_tar_prefix
from executors.containerd import image_id as containerd_image_id
from executors.deployments import deployment_facts, read_deployments, rollout_crashes
from executors.health import HealthReading, health_checks, health_expected, read_health
from executors.k3s_restore import K8S_BEFORE
from executors.k8s_manifest import fixed_images, render
from executors.provenance import expected_image_id
from executors.stamp import COMPOSE_PROJECT, COMPOSE_SERVICE, ENV_COMMIT, ENV_REQUESTED, deploy_env
from executors.steps import QuietContext, fail, k3s_node, replace_latest, run_checked
from executors.verify import poll, verify_window
from unidesk_tui import k3s_only
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_image_ref, same_image
from unidesk_tui.isolation import touches_production_twin
from unidesk_tui.model import Check, DesiredService, Layer, Verification, check

ROLLOUT_TIMEOUT = 180.0
POLL = 1.0


def containerized_k3s(ps_lines: list[str]) -> list[tuple[str, str]]:
    """Running containers whose image is a k3s distribution, from `docker ps` lines `ID NAME IMAGE`:
    (id, "name (image)")."""
    found = []
    for line in ps_lines:
        cid, _, rest = line.strip().partition(" ")
        name, _, image = rest.partition(" ")
        repo = image.split("@", 1)[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image.split("@", 1)[0]
        if repo.split("/")[-1] == "k3s" or repo.endswith("rancher/k3s"):
            found.append((cid, f"{name} ({image})"))
    return found


async def running_containerized_k3s(session) -> list[tuple[str, str]]:
    ps = await session.run(["docker", "ps", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Image}}"], timeout=30)
    return containerized_k3s(ps.stdout.splitlines()) if ps.ok else []


async def preflight_step(ctx) -> None:
    """Native k3s only: the node's API answers through the tunnel with the node's own kubeconfig,
    its containerd answers; a k3s running in Docker is named (the next step stops it)."""
    import aiohttp
    from kubernetes_asyncio.client import VersionApi
    from kubernetes_asyncio.client.exceptions import ApiException

    node = k3s_node(ctx)
    session = await ctx.session()
    absent = f"no native k3s on {ctx.target.id}"
    try:
        api = await session.kube()
        version = await VersionApi(api).get_code(_request_timeout=10)
    except UnideskError as exc:
        raise fail(
            ctx, ErrorCode.K3S_NOT_NATIVE, f"{absent}: kubeconfig {node.kubeconfig}: {exc.problems[0].message}"
        ) from None
    except (TimeoutError, ApiException, aiohttp.ClientError, OSError) as exc:
        raise fail(
            ctx,
            ErrorCode.K3S_NOT_NATIVE,
            f"{absent}: the API server of kubeconfig {node.kubeconfig} does not answer: {exc}",
        ) from None
    ctx.emit(f"k3s_kubeconfig={node.kubeconfig} api_version={version.git_version}")
    res = await session.run(ctr_argv(node, "version"), timeout=60)
    if not res.ok:
        raise fail(
            ctx,
            ErrorCode.K3S_NOT_NATIVE,
            f"{absent}: containerd at {node.containerdSocket} does not answer: {res.tail(300)}",
        )
    ctx.emit(
        f"k3s_containerd={node.containerdSocket} namespace={node.containerdNamespace} "
        f"({res.stdout.strip().splitlines()[-1] if res.stdout.strip() else 'ok'})"
    )
    boxed = await running_containerized_k3s(session)
    ctx.emit(
        f"k3s_containerized={', '.join(d for _, d in boxed)} (to be stopped)" if boxed else "k3s_containerized=none"
    )


async def stop_containerized_step(ctx) -> None:
    """The spec: running k3s in Docker is forbidden and an active containerized control plane must
    be stopped before verification succeeds. It is stopped (restart policy cleared, so a daemon
    restart does not bring it back), never removed: its image may still serve as a migration source."""
    session = await ctx.session()
    boxed = await running_containerized_k3s(session)
    for cid, described in boxed:
        for argv in (["docker", "update", "--restart=no", "--", cid], ["docker", "stop", "-t", "10", "--", cid]):
            res = await session.run(argv, timeout=60)
            if not res.ok:
                raise fail(
                    ctx, ErrorCode.ROLLOUT_FAILED, f"cannot stop the containerized k3s {described}: {res.tail(300)}"
                )
        ctx.emit(f"k3s_containerized_stopped={described} id={cid[:12]}")
    if not boxed:
        ctx.emit("k3s_containerized=none running")


async def manifest_step(ctx) -> None:
    """Read the manifest at the deployed commit from the target's mirror; narrow, fill in, stamp."""
    service = ctx.service
    k8s = service.k8s
    mirror = ctx.shared.get("mirror")
    if k8s is None or not mirror:
        raise fail(ctx, ErrorCode.ROLLOUT_FAILED, "no k8s objects or no materialized source")
    session = await ctx.session()
    res = await run_checked(
        session,
        QuietContext(ctx),
        ["git", "--git-dir", mirror, "show", f"{service.commit}:{k8s.manifest}"],
        ErrorCode.ROLLOUT_FAILED,
        f"reading {k8s.manifest} at {service.commit[:12]}",
    )
    image = service.image  # the environment's own image in an environment run
    if not image or not is_image_ref(image):
        raise fail(ctx, ErrorCode.ROLLOUT_FAILED, f"no valid image name ({image!r})")
    ctx.shared["image"] = image
    env = deploy_env(service.id, service.repo, service.commit, service.requestedCommit)
    objects = render(res.stdout, k8s, service.id, image, env, restart=ctx.force)
    refuse_node_exposure(ctx, res.stdout, objects)
    ctx.shared["k8s_objects"] = objects
    ctx.emit(f"k8s_manifest={k8s.manifest}@{service.commit[:12]} (from the target's mirror)")
    ctx.emit(
        f"k8s_objects={', '.join(o['kind'] + ' ' + k8s.namespace + '/' + o['metadata']['name'] for o in objects)} "
        f"image={image}"
    )


def refuse_node_exposure(ctx, manifest_text: str, objects: list[dict]) -> None:
    """A k3s-only service (decision-center by default) exposed on a node is refused here, before
    anything is built, imported or applied: every k3s apply renders its manifest in this step."""
    service = ctx.service
    if service.microservice is None or not service.microservice.is_k3s_only:
        return
    everything = [d for d in yaml.safe_load_all(manifest_text) if isinstance(d, dict)]
    k8s = service.k8s
    problems = k3s_only.manifest_problems(service.id, k8s.manifest, k8s.namespace, objects, everything)
    for problem in problems:
        ctx.emit(problem.message, "stderr")
    if problems:
        raise UnideskError(*problems)
    ctx.emit(f"k3s_only=ok (no NodePort, hostPort or hostNetwork in {len(objects)} objects)")


async def import_step(ctx) -> None:
    """`docker save` on the target, `ctr images import` into the native k3s containerd."""
    node = k3s_node(ctx)
    prefix = service_tar_prefix(ctx, ctx.service.commit[:12])
    full = await import_image(ctx, node, ctx.shared["image"], prefix=prefix, prune=True)
    ctx.shared["imported"] = full
    ctx.emit(f"k3s_image_imported={full} containerd={node.containerdSocket}")


async def apply_step(ctx) -> None:
    """Create or replace each object, only in the service's namespace."""
    from kubernetes_asyncio.client import AppsV1Api, CoreV1Api
    from kubernetes_asyncio.client.exceptions import ApiException

    session = await ctx.session()
    api = await session.kube()
    apps, core = AppsV1Api(api), CoreV1Api(api)
    ns = ctx.service.k8s.namespace
    try:  # the namespace is the environment's foundation: apply never creates it
        await core.read_namespace(ns, _request_timeout=10)
    except ApiException as exc:
        if exc.status == 404:
            raise fail(
                ctx,
                ErrorCode.ROLLOUT_FAILED,
                f"namespace {ns} does not exist; apply never creates one (apply its foundation first)",
            ) from None
        raise fail(ctx, ErrorCode.ROLLOUT_FAILED, f"namespace {ns}: HTTP {exc.status}") from None
    ctx.emit(f"k8s_namespace={ns} (exists)")
    calls: dict[str, tuple[Any, Any, Any]] = {
        "Deployment": (
            apps.read_namespaced_deployment,
            apps.create_namespaced_deployment,
            apps.replace_namespaced_deployment,
        ),
        "Service": (core.read_namespaced_service, core.create_namespaced_service, core.replace_namespaced_service),
    }
    before = ctx.shared.setdefault(K8S_BEFORE, {})  # what a restore re-applies (None: created here)
    for obj in ctx.shared["k8s_objects"]:
        read, create, replace = calls[obj["kind"]]
        name = obj["metadata"]["name"]
        try:
            try:
                live = api.sanitize_for_serialization(await read(name, ns, _request_timeout=10))
            except ApiException as exc:
                if exc.status != 404:
                    raise
                before.setdefault((obj["kind"], name), None)
                await create(ns, obj, _request_timeout=10)
                ctx.emit(f"k8s_applied={obj['kind']} {ns}/{name} (created)")
                continue
            before.setdefault((obj["kind"], name), live)

            def body_for(current: dict, obj: dict = obj) -> dict:
                body = dict(obj)
                body["metadata"] = {**obj["metadata"], "resourceVersion": current["metadata"].get("resourceVersion")}
                if obj["kind"] == "Service" and (current.get("spec") or {}).get("clusterIP"):
                    body["spec"] = {**obj.get("spec", {}), "clusterIP": current["spec"]["clusterIP"]}
                return body

            async def read_live(read: Any = read, name: str = name) -> dict:
                return api.sanitize_for_serialization(await read(name, ns, _request_timeout=10))

            async def write(body: dict, replace: Any = replace, name: str = name) -> None:
                await replace(name, ns, body, _request_timeout=10)

            await replace_latest(live, read_live, write, body_for)
            ctx.emit(f"k8s_applied={obj['kind']} {ns}/{name} (replaced)")
        except ApiException as exc:
            raise fail(
                ctx,
                ErrorCode.ROLLOUT_FAILED,
                f"applying {obj['kind']} {ns}/{name}: HTTP {exc.status} {exc.reason}: {str(exc.body or '')[:300]}",
            ) from None


async def rollout_step(ctx) -> None:
    """Wait until every Deployment of the service has rolled out its newest generation; a container
    of the new pods that exits or crash-loops fails the step at once, with exit code and output."""
    session = await ctx.session()
    k8s = ctx.service.k8s
    deadline = time.monotonic() + ROLLOUT_TIMEOUT
    last = None
    while True:
        deps = await read_deployments(session, k8s.namespace, k8s.deployments)
        states = {n: (deployment_facts(d)["rollout"] if d else None) for n, d in deps.items()}
        if all(s and s["complete"] for s in states.values()):
            done = ", ".join(f"{n} {s['available']}/{s['replicas']}" for n, s in states.items() if s)
            ctx.emit(f"k8s_rollout=complete {done}")
            return
        crashes = await rollout_crashes(session, k8s.namespace, deps, ctx.service.commit)
        if crashes:  # waiting cannot help: fail now, not after the rollout timeout
            raise fail(ctx, ErrorCode.ROLLOUT_FAILED, "rollout failed: " + "; ".join(c.describe() for c in crashes))
        summary = "; ".join(
            f"{n}: "
            + (
                "absent"
                if s is None
                else "updated {updated}/{replicas}, available {available}, generation "
                "{observedGeneration}/{generation}".format(**s)
            )
            for n, s in states.items()
        )
        if summary != last:
            ctx.emit(f"k8s_rollout=waiting {summary}")
            last = summary
        if time.monotonic() >= deadline:
            conditions = [
                c.get("message")
                for d in deps.values()
                if d
                for c in (d.get("status") or {}).get("conditions") or []
                if c.get("status") == "False"
            ]
            why = "; ".join(filter(None, conditions))
            raise fail(
                ctx,
                ErrorCode.ROLLOUT_FAILED,
                f"rollout not complete after {ROLLOUT_TIMEOUT:g} s: {summary}" + (f" ({why})" if why else ""),
            )
        await asyncio.sleep(POLL)


def twin_rows(rows: list[dict], project: str, service: str) -> list[dict]:
    """Containers of exactly the declared compose project and service (never guessed from the id)."""
    return [
        r
        for r in rows
        if (r.get("Labels") or {}).get(COMPOSE_PROJECT) == project
        and (r.get("Labels") or {}).get(COMPOSE_SERVICE) == service
    ]


async def legacy_twin_step(ctx) -> None:
    """After the k3s rollout: stop and remove the legacy direct-Docker twin the catalog declares as
    the service's base `compose` (e.g. Code Queue's code-queue/code-queue-backend), so only one copy
    (e.g. one scheduler) runs on the node. Never in an environment run: that twin is production."""
    service = ctx.service
    if not touches_production_twin(service):
        ctx.emit(f"legacy_docker_twin=skipped ({service.environment} run: the declared twin is production's)")
        return
    declared = service.microservice.compose if service.microservice else None
    if declared is None:
        ctx.emit("legacy_docker_twin=none declared (no base compose in config.json)")
        return
    session = await ctx.session()
    docker = await session.docker()
    listed = await docker.containers.list(
        all="1",
        filters=json.dumps(
            {"label": [f"{COMPOSE_PROJECT}={declared.project}", f"{COMPOSE_SERVICE}={declared.service}"]}
        ),
    )
    rows = twin_rows([c._container for c in listed], declared.project, declared.service)
    if not rows:
        ctx.emit(f"legacy_docker_twin=none ({declared.project}/{declared.service})")
        return
    for info in rows:
        name = (info.get("Names") or ["?"])[0].lstrip("/")
        res = await session.run(["docker", "rm", "-f", "--", info["Id"]], timeout=120)
        if not res.ok:
            raise fail(ctx, ErrorCode.ROLLOUT_FAILED, f"cannot remove legacy Docker twin {name}: {res.tail(300)}")
        ctx.emit(
            f"legacy_docker_twin_removed={name} ({declared.project}/{declared.service}, {info.get('Image')}, was "
            f"{info.get('State')})"
        )


def check_k3s(
    service: DesiredService,
    deployments: dict[str, dict[str, Any] | None],
    reading: HealthReading,
    health_expected: bool,
    image: str | None,
    fixed: frozenset[str] = frozenset(),
    *,
    built: str | None = None,
    running_id: str | None = None,
    containerized: tuple[str, ...] = (),
) -> Verification:
    """Every Deployment exists, its annotations and env show the commit, its containers run `image`
    (the one imported) or a fixed image the manifest declares, containerd holds exactly the image ID
    `built` under that name (identity), its rollout is complete; no containerized k3s runs; health
    is healthy and shows the commit where exposed."""
    want = service.commit
    checks: list[Check] = []
    for name, dep in deployments.items():
        if dep is None:
            checks.append(Check(Layer.ANNOTATION, f"Deployment {name}", "present", None, False))
            continue
        facts = deployment_facts(dep)
        for layer, key in ((Layer.ANNOTATION, "annotations"), (Layer.ENV, "env")):
            checks.append(check(layer, f"{name} {ENV_COMMIT}", want, facts[key].get(ENV_COMMIT)))
            checks.append(
                check(layer, f"{name} {ENV_REQUESTED}", service.requestedCommit, facts[key].get(ENV_REQUESTED))
            )
        foreign = [i for i in facts["images"] if not same_image(i, image) and i not in fixed]
        running = ", ".join(map(str, foreign or facts["images"])) or None
        checks.append(Check(Layer.IMAGE, f"{name} image", image, running, bool(facts["images"]) and not foreign))
        rollout = facts["rollout"]
        progress = (
            "complete"
            if rollout["complete"]
            else "updated {updated}/{replicas}, available {available}".format(**rollout)
        )
        checks.append(Check(Layer.RUNTIME, f"{name} rollout", "complete", progress, rollout["complete"]))
    if built:
        checks.append(check(Layer.IDENTITY, f"{image} image ID", built, running_id))
    if containerized:  # the spec: an active containerized k3s must be stopped before verification succeeds
        checks.append(Check(Layer.RUNTIME, "containerized k3s", "none running", ", ".join(containerized), False))
    checks += health_checks(reading, want, health_expected)
    summary = (
        f"running {want} on {', '.join(deployments)} (annotations, env, image {image}"
        + (", identity" if built else "")
        + f", health {reading.health}"
        + (", deploy.commit)" if health_expected else ")")
    )
    return Verification(tuple(checks), summary)


async def verify_step(ctx) -> None:
    session = await ctx.session()
    service, catalog = ctx.service, ctx.catalog
    k8s = service.k8s
    node = k3s_node(ctx)
    expected = health_expected(catalog, service)
    url = catalog.health_url(service.id, service.environment)
    image = ctx.shared.get("imported") or ctx.shared.get("image") or service.image
    # images the manifest declares fixed (checked present by the validate step) run as declared
    fixed = frozenset(i for _, i in fixed_images(ctx.shared.get("k8s_objects") or [], ctx.shared.get("image") or image))
    built = await expected_image_id(ctx)

    async def read() -> Verification:
        deps, reading, running, boxed = await asyncio.gather(
            read_deployments(session, k8s.namespace, k8s.deployments),
            read_health(url),
            containerd_image_id(session, node, image) if built else _none(),
            running_containerized_k3s(session),
        )
        return check_k3s(
            service,
            deps,
            reading,
            expected,
            image,
            fixed,
            built=built,
            running_id=running,
            containerized=tuple(d for _, d in boxed),
        )

    await poll(ctx, read, timeout=verify_window(ctx))


async def _none() -> None:
    return None
