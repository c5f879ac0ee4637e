"""The Kubernetes API emulator, driven in-process over HTTP by kubernetes-asyncio (and kubectl when installed)."""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass

import aiohttp
import pytest
import pytest_asyncio
from kubernetes_asyncio import client, watch
from kubernetes_asyncio.client.exceptions import ApiException

from unidesk_lab.kubeapi import (
    Store,
    find_resource,
    json_patch,
    merge_patch,
    parse_label_selector,
    start_server,
    strategic_merge,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")
NS = "unidesk-dev"


@dataclass
class Kube:
    store: Store
    port: int
    api: client.ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api


@pytest_asyncio.fixture(loop_scope="module")
async def kube(tmp_path):
    store = Store(tmp_path / "kube")
    runner, port = await start_server(store, "127.0.0.1", 0)
    config = client.Configuration(host=f"http://127.0.0.1:{port}")
    async with client.ApiClient(configuration=config) as api:
        yield Kube(store, port, api, client.CoreV1Api(api), client.AppsV1Api(api))
    store.close()
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="module")
async def ns(kube):
    await kube.core.create_namespace({"metadata": {"name": NS}})
    return NS


def deployment(name: str = "web", image: str = "labbox:1", **labels: str) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name, **labels}, "annotations": {"unidesk.ai/commit": "a" * 40}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image, "env": [{"name": "A", "value": "1"}]}]},
            },
        },
    }


def status_of(exc: ApiException) -> dict:
    body = json.loads(exc.body)
    assert body["kind"] == "Status" and body["status"] == "Failure"
    return body


# --------------------------------------------------------------------------- discovery


async def test_discovery_lists_served_kinds(kube):
    version = await client.VersionApi(kube.api).get_code()
    assert version.major == "1" and version.git_version.startswith("v1.")
    core = await kube.core.get_api_resources()
    by_name = {r.name: r for r in core.resources}
    assert by_name["namespaces"].kind == "Namespace" and not by_name["namespaces"].namespaced
    assert by_name["configmaps"].namespaced and "watch" in by_name["configmaps"].verbs
    for plural in ("secrets", "services", "persistentvolumeclaims", "resourcequotas", "limitranges"):
        assert plural in by_name
    apps = {r.name: r for r in (await kube.apps.get_api_resources()).resources}
    assert apps["deployments"].kind == "Deployment" and set(apps["deployments"].verbs) >= {
        "create",
        "delete",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    }
    assert "deployments/status" in apps and "statefulsets" in apps
    batch = await client.BatchV1Api(kube.api).get_api_resources()
    assert [r.kind for r in batch.resources if r.name == "jobs"] == ["Job"]
    groups = await client.ApisApi(kube.api).get_api_versions()
    assert {g.name for g in groups.groups} == {"apps", "batch"}


# --------------------------------------------------------------------------- CRUD and server-set metadata


async def test_namespaced_object_needs_its_namespace(kube):
    with pytest.raises(ApiException) as err:
        await kube.apps.create_namespaced_deployment("missing", deployment())
    body = status_of(err.value)
    assert (err.value.status, body["reason"], body["message"]) == (404, "NotFound", 'namespaces "missing" not found')


async def test_create_sets_server_metadata_and_refuses_duplicates(kube, ns):
    created = await kube.apps.create_namespaced_deployment(ns, deployment())
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp and meta.generation == 1
    assert int(meta.resource_version) > 0 and created.spec.replicas == 1
    with pytest.raises(ApiException) as err:
        await kube.apps.create_namespaced_deployment(ns, deployment())
    body = status_of(err.value)
    assert (err.value.status, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == 'deployments.apps "web" already exists'
    other = await kube.core.create_namespaced_config_map(ns, {"metadata": {"name": "cfg"}, "data": {"K": "v"}})
    assert int(other.metadata.resource_version) == int(meta.resource_version) + 1  # one global counter
    assert other.metadata.uid != meta.uid


async def test_get_list_selectors_and_all_namespaces(kube, ns):
    await kube.core.create_namespace({"metadata": {"name": "other"}})
    await kube.apps.create_namespaced_deployment(ns, deployment("web", tier="front"))
    await kube.apps.create_namespaced_deployment(ns, deployment("api", tier="back"))
    await kube.apps.create_namespaced_deployment("other", deployment("web", tier="front"))
    got = await kube.apps.read_namespaced_deployment("api", ns)
    assert got.metadata.labels == {"app": "api", "tier": "back"}
    listed = await kube.apps.list_namespaced_deployment(ns)
    assert [d.metadata.name for d in listed.items] == ["api", "web"]
    assert int(listed.metadata.resource_version) >= int(got.metadata.resource_version)
    front = await kube.apps.list_namespaced_deployment(ns, label_selector="tier=front")
    assert [d.metadata.name for d in front.items] == ["web"]
    not_front = await kube.apps.list_namespaced_deployment(ns, label_selector="tier!=front,app")
    assert [d.metadata.name for d in not_front.items] == ["api"]
    everywhere = await kube.apps.list_deployment_for_all_namespaces(label_selector="app==web")
    assert sorted(d.metadata.namespace for d in everywhere.items) == ["other", ns]
    by_name = await kube.apps.list_namespaced_deployment(ns, field_selector="metadata.name=api")
    assert [d.metadata.name for d in by_name.items] == ["api"]
    with pytest.raises(ApiException) as err:
        await kube.apps.read_namespaced_deployment("nope", ns)
    body = status_of(err.value)
    assert (err.value.status, body["reason"], body["details"]["name"]) == (404, "NotFound", "nope")


async def test_replace_checks_resource_version_and_counts_generations(kube, ns):
    first = await kube.apps.create_namespaced_deployment(ns, deployment())
    body = deployment(image="labbox:2")
    body["metadata"]["resourceVersion"] = first.metadata.resource_version
    second = await kube.apps.replace_namespaced_deployment("web", ns, body)
    assert second.metadata.generation == 2 and second.metadata.uid == first.metadata.uid
    assert second.spec.template.spec.containers[0].image == "labbox:2"
    assert int(second.metadata.resource_version) > int(first.metadata.resource_version)
    with pytest.raises(ApiException) as err:  # stale resourceVersion
        await kube.apps.replace_namespaced_deployment("web", ns, body)
    assert (err.value.status, status_of(err.value)["reason"]) == (409, "Conflict")
    # metadata-only change: new resourceVersion, same generation
    labels = await kube.apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"extra": "1"}}})
    assert labels.metadata.generation == 2
    assert int(labels.metadata.resource_version) > int(second.metadata.resource_version)
    # a no-op write changes nothing, not even the resourceVersion
    again = await kube.apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"extra": "1"}}})
    assert again.metadata.resource_version == labels.metadata.resource_version


async def test_delete_then_not_found(kube, ns):
    await kube.apps.create_namespaced_deployment(ns, deployment())
    result = await kube.apps.delete_namespaced_deployment("web", ns)
    assert result.status == "Success"
    with pytest.raises(ApiException) as err:
        await kube.apps.delete_namespaced_deployment("web", ns)
    assert err.value.status == 404
    assert (await kube.apps.list_namespaced_deployment(ns)).items == []


async def test_deleting_a_namespace_deletes_its_objects(kube, ns):
    await kube.apps.create_namespaced_deployment(ns, deployment())
    await kube.core.delete_namespace(ns)
    assert (await kube.apps.list_deployment_for_all_namespaces()).items == []


async def test_invalid_deployment_is_rejected(kube, ns):
    body = deployment()
    body["spec"]["selector"]["matchLabels"] = {"app": "other"}
    with pytest.raises(ApiException) as err:
        await kube.apps.create_namespaced_deployment(ns, body)
    assert (err.value.status, status_of(err.value)["reason"]) == (422, "Invalid")


async def test_secret_string_data_is_stored_base64(kube, ns):
    secret = await kube.core.create_namespaced_secret(ns, {"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}})
    assert secret.data == {"pw": "aHVudGVyMg=="} and secret.string_data is None


# --------------------------------------------------------------------------- patches


async def test_merge_patch(kube, ns):
    await kube.apps.create_namespaced_deployment(ns, deployment())
    patched = await kube.apps.patch_namespaced_deployment(
        "web",
        ns,
        {"spec": {"replicas": 3}, "metadata": {"annotations": {"unidesk.ai/commit": None}}},
        _content_type="application/merge-patch+json",
    )
    assert patched.spec.replicas == 3 and patched.metadata.generation == 2
    assert "unidesk.ai/commit" not in (patched.metadata.annotations or {})


async def test_strategic_merge_patch_merges_containers_by_name(kube, ns):
    await kube.apps.create_namespaced_deployment(ns, deployment())
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "web", "env": [{"name": "B", "value": "2"}]},
                        {"name": "side", "image": "sidecar:1"},
                    ]
                }
            }
        }
    }
    patched = await kube.apps.patch_namespaced_deployment(
        "web", ns, patch, _content_type="application/strategic-merge-patch+json"
    )
    web, side = patched.spec.template.spec.containers
    assert (web.name, web.image, side.name, side.image) == ("web", "labbox:1", "side", "sidecar:1")
    assert [(e.name, e.value) for e in web.env] == [("A", "1"), ("B", "2")]
    # a plain dict body defaults to strategic merge in kubernetes-asyncio
    patched = await kube.apps.patch_namespaced_deployment(
        "web", ns, {"spec": {"template": {"spec": {"containers": [{"name": "side", "$patch": "delete"}]}}}}
    )
    assert [c.name for c in patched.spec.template.spec.containers] == ["web"]


async def test_json_patch(kube, ns):
    await kube.apps.create_namespaced_deployment(ns, deployment())
    patched = await kube.apps.patch_namespaced_deployment(
        "web",
        ns,
        [
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "labbox:9"},
            {"op": "add", "path": "/metadata/annotations/unidesk.ai~1requested", "value": "abc"},
        ],
    )
    assert patched.spec.template.spec.containers[0].image == "labbox:9"
    assert patched.metadata.annotations["unidesk.ai/requested"] == "abc"
    with pytest.raises(ApiException) as err:
        await kube.apps.patch_namespaced_deployment("web", ns, [{"op": "test", "path": "/spec/replicas", "value": 7}])
    assert err.value.status == 422


async def test_server_side_apply_creates_then_merges(kube, ns):
    apply = {"_content_type": "application/apply-patch+yaml", "field_manager": "unidesk"}
    created = await kube.apps.patch_namespaced_deployment("web", ns, deployment(), **apply)
    assert created.metadata.generation == 1 and created.metadata.uid
    assert created.metadata.managed_fields[0].manager == "unidesk"
    again = await kube.apps.patch_namespaced_deployment("web", ns, deployment(), **apply)
    assert again.metadata.resource_version == created.metadata.resource_version  # idempotent
    updated = await kube.apps.patch_namespaced_deployment("web", ns, deployment(image="labbox:2"), **apply)
    assert updated.metadata.generation == 2
    assert updated.spec.template.spec.containers[0].image == "labbox:2"
    assert updated.spec.template.spec.containers[0].env[0].name == "A"
    cm = await kube.core.patch_namespaced_config_map(
        "cfg", ns, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cfg"}, "data": {"K": "v"}}, **apply
    )
    assert cm.data == {"K": "v"}
    with pytest.raises(ApiException) as err:  # the real server requires a field manager for apply
        await kube.apps.patch_namespaced_deployment(
            "web", ns, deployment(), _content_type="application/apply-patch+yaml"
        )
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:  # create-on-apply still needs the namespace
        await kube.apps.patch_namespaced_deployment("web", "missing", deployment(), **apply)
    assert (err.value.status, status_of(err.value)["message"]) == (404, 'namespaces "missing" not found')


# --------------------------------------------------------------------------- status and watch


async def test_status_subresource(kube, ns):
    created = await kube.apps.create_namespaced_deployment(ns, deployment() | {"status": {"replicas": 5}})
    assert not (created.status and created.status.replicas)  # status from a create is ignored
    status = {
        "status": {
            "observedGeneration": 1,
            "replicas": 1,
            "readyReplicas": 1,
            "conditions": [{"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}],
        }
    }
    patched = await kube.apps.patch_namespaced_deployment_status(
        "web", ns, status, _content_type="application/merge-patch+json"
    )
    assert patched.status.ready_replicas == 1 and patched.metadata.generation == 1
    read = await kube.apps.read_namespaced_deployment_status("web", ns)
    assert read.status.conditions[0].type == "Available"
    # a main-resource write cannot touch status, and a status write cannot touch spec
    body = kube.api.sanitize_for_serialization(read)
    body["status"]["readyReplicas"] = 0
    body["spec"]["replicas"] = 4
    replaced = await kube.apps.replace_namespaced_deployment("web", ns, body)
    assert replaced.status.ready_replicas == 1 and replaced.spec.replicas == 4 and replaced.metadata.generation == 2
    body = kube.api.sanitize_for_serialization(replaced)
    body["status"]["readyReplicas"] = 2
    body["spec"]["replicas"] = 1
    after = await kube.apps.replace_namespaced_deployment_status("web", ns, body)
    assert after.status.ready_replicas == 2 and after.spec.replicas == 4 and after.metadata.generation == 2


async def test_watch_yields_modified_after_patch(kube, ns):
    await kube.apps.create_namespaced_deployment(ns, deployment())
    listed = await kube.apps.list_namespaced_deployment(ns)
    events: list[tuple[str, dict]] = []

    async def follow() -> None:
        w = watch.Watch()
        async with w.stream(
            kube.apps.list_namespaced_deployment,
            ns,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=10,
        ) as stream:
            async for event in stream:
                events.append((event["type"], event["object"]))
                if event["type"] == "MODIFIED":
                    w.stop()

    task = asyncio.create_task(follow())
    await kube.apps.patch_namespaced_deployment("web", ns, {"metadata": {"labels": {"watched": "yes"}}})
    await asyncio.wait_for(task, 10)
    assert [t for t, _ in events] == ["MODIFIED"]
    assert events[0][1].metadata.labels["watched"] == "yes"


async def test_watch_without_resource_version_starts_with_current_objects(kube, ns):
    await kube.apps.create_namespaced_deployment(ns, deployment())
    w = watch.Watch()
    seen = []
    async with w.stream(kube.apps.list_namespaced_deployment, ns, timeout_seconds=1) as stream:
        async for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
            w.stop()
    assert seen == [("ADDED", "web")]


# --------------------------------------------------------------------------- persistence


async def test_objects_survive_a_restart(kube, ns, tmp_path):
    created = await kube.apps.create_namespaced_deployment(ns, deployment())
    reopened = Store(tmp_path / "kube")
    obj = reopened.get(find_resource("apps", "deployments"), ns, "web")
    assert obj["metadata"]["uid"] == created.metadata.uid
    assert reopened.resource_version == kube.store.resource_version
    assert not list((tmp_path / "kube").glob(".objects.*"))  # no temp files left behind


# --------------------------------------------------------------------------- kubectl


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
async def test_kubectl_apply_get_and_rollout_status(kube, ns, tmp_path):
    manifest = tmp_path / "web.json"
    manifest.write_text(json.dumps(deployment() | {"metadata": deployment()["metadata"] | {"namespace": ns}}))
    base = ["kubectl", "--server", f"http://127.0.0.1:{kube.port}", "--kubeconfig", "/dev/null"]

    async def kubectl(*args: str) -> tuple[int, str]:
        proc = await asyncio.create_subprocess_exec(
            *base, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
        return proc.returncode, out.decode()

    rc, out = await kubectl("apply", "--validate=false", "-f", str(manifest))
    assert rc == 0, out
    rollout = asyncio.create_task(kubectl("-n", ns, "rollout", "status", "deployment/web", "--timeout=20s"))
    await asyncio.sleep(0.5)  # not a timing assertion: rollout status just has to be watching before the update
    await kube.apps.patch_namespaced_deployment_status(
        "web",
        ns,
        {
            "status": {
                "observedGeneration": 1,
                "replicas": 1,
                "updatedReplicas": 1,
                "readyReplicas": 1,
                "availableReplicas": 1,
            }
        },
        _content_type="application/merge-patch+json",
    )
    rc, out = await rollout
    assert rc == 0 and "successfully rolled out" in out, out
    rc, out = await kubectl("-n", ns, "get", "deployment", "web", "-o", "json")
    assert rc == 0 and json.loads(out)["metadata"]["generation"] == 1
    rc, out = await kubectl("-n", ns, "scale", "deployment/web", "--replicas=2")
    assert rc == 0 and (await kube.apps.read_namespaced_deployment("web", ns)).spec.replicas == 2


# --------------------------------------------------------------------------- pure helpers


async def test_patch_helpers():
    doc = {"a": {"b": 1, "c": [1, 2]}, "d": 1}
    assert merge_patch(doc, {"a": {"b": None, "c": [3]}, "e": 2}) == {"a": {"c": [3]}, "d": 1, "e": 2}
    assert json_patch(doc, [{"op": "move", "from": "/d", "path": "/a/d"}]) == {"a": {"b": 1, "c": [1, 2], "d": 1}}
    ports = {"ports": [{"name": "http", "port": 80}, {"name": "m", "port": 9090}]}
    merged = strategic_merge(
        ports, {"ports": [{"port": 80, "targetPort": 8080}], "$setElementOrder/ports": [{"port": 80}, {"port": 9090}]}
    )
    assert merged == {"ports": [{"name": "http", "port": 80, "targetPort": 8080}, {"name": "m", "port": 9090}]}
    assert strategic_merge({"finalizers": ["a", "b"]}, {"$deleteFromPrimitiveList/finalizers": ["a"]}) == {
        "finalizers": ["b"]
    }


async def test_label_selector():
    sel = parse_label_selector("app in (web, api),tier notin (db),!legacy,env=dev")
    assert sel({"app": "web", "env": "dev"})
    assert not sel({"app": "web", "env": "dev", "legacy": "1"})
    assert not sel({"app": "db", "env": "dev"})
    assert not sel({"app": "api", "tier": "db", "env": "dev"})


# --------------------------------------------------------------------------- controller naming (no containerd)


async def test_image_candidates_accept_bare_and_docker_io_names():
    from unidesk_lab.kubecontroller import image_candidates

    assert "docker.io/library/labbox:1" in image_candidates("labbox:1")
    assert "labbox:1" in image_candidates("docker.io/library/labbox:1")
    assert "docker.io/library/labbox:latest" in image_candidates("labbox")
    assert "docker.io/team/app:2" in image_candidates("team/app:2")
    assert image_candidates("registry.local:5000/app:1") == ["registry.local:5000/app:1"]


async def test_container_ids_come_from_valid_names_only():
    from unidesk_lab.kubecontroller import container_id

    assert container_id("unidesk-dev", "web", 3) == "kubeapi_unidesk-dev_web_3"
    long_id = container_id("n" * 63, "d" * 63, 12)
    assert len(long_id) <= 76 and long_id.endswith("_12")
    for bad in ("-x", "a_b", "A", "a;rm", ""):
        with pytest.raises(ValueError):
            container_id("ns", bad, 1)


async def test_crash_backoff_restarts_at_once_then_doubles_to_the_cap_and_resets_after_ten_minutes():
    """The kubelet's crash-loop back-off: restart at once, then wait 10 s, 20 s, ... 300 s; a container
    that ran 10 minutes starts over."""
    from unidesk_lab.kubecontroller import crash_backoff

    backoff, delays = 0.0, []
    for _ in range(8):
        delay, backoff = crash_backoff(backoff, ran_for=1.0)
        delays.append(delay)
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]
    assert crash_backoff(300.0, ran_for=600.0) == (0.0, 10.0)


async def test_readiness_follows_the_probe_thresholds_and_period():
    """Ready after successThreshold successes; a ready pod is probed once per periodSeconds and turns not
    ready only after failureThreshold failures in a row (kube defaults 10 s, 1 s timeout, 3)."""
    from unidesk_lab.kubecontroller import Readiness

    r = Readiness.of({"tcpSocket": {"port": 5432}})
    assert (r.period, r.timeout, r.successes_needed, r.failures_allowed) == (10, 1, 1, 3)
    assert r.due(now=0.0, started=0.0) and r.record(0.0, True)
    assert not r.due(now=5.0, started=0.0) and r.due(now=10.0, started=0.0)
    assert r.record(10.0, False) and r.record(20.0, False)  # two misses: still ready
    assert r.record(30.0, True) and r.failures == 0  # a success resets the count
    assert [r.record(40.0 + 10 * i, False) for i in range(3)] == [True, True, False]
    assert r.due(now=61.0, started=0.0)  # not ready: probed whenever asked

    strict = Readiness.of(
        {
            "httpGet": {"port": 80},
            "periodSeconds": 2,
            "timeoutSeconds": 3,
            "successThreshold": 2,
            "failureThreshold": 1,
            "initialDelaySeconds": 5,
        }
    )
    assert not strict.due(now=4.0, started=0.0) and strict.due(now=5.0, started=0.0)
    assert not strict.record(5.0, True) and strict.record(5.5, True) and not strict.record(7.5, False)
    assert strict.timeout == 3
    assert Readiness.of({"periodSeconds": "x", "failureThreshold": 0}).failures_allowed == 1


async def test_watch_list_protocol_ends_initial_events_with_bookmark(kube, ns):
    await kube.apps.create_namespaced_deployment(ns, deployment())
    url = (
        f"http://127.0.0.1:{kube.port}/apis/apps/v1/namespaces/{ns}/deployments?watch=true&timeoutSeconds=1"
        "&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    )
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        events = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [e["type"] for e in events] == ["ADDED", "BOOKMARK"]
    bookmark = events[1]["object"]["metadata"]
    assert bookmark["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["resourceVersion"] == kube.store.resource_version
