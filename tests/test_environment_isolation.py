"""A dev apply leaves production alone: its own override, namespace, target, image and health URL;
the shipped example manifests render bound to the image built for their run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from executors.containerd import containerd_name, image_tag
from executors.k3s_apply import twin_rows
from executors.k8s_manifest import fixed_images, leftovers, render
from executors.registry import executor_for
from executors.stamp import deploy_env
from unidesk_tui import jobs
from unidesk_tui.apply import apply
from unidesk_tui.catalog import load_catalog, parse_catalog
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.isolation import isolation_problems
from unidesk_tui.model import environment
from unidesk_tui.plan import desired_service
from unidesk_tui.workspace import Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "unidesk"
A = "a" * 40


def example():
    return load_catalog(EXAMPLES / "config.json")


def example_doc() -> dict:
    return json.loads((EXAMPLES / "config.json").read_text())


def desired(catalog, sid: str, env: str | None):
    ms = catalog.microservice(sid)
    return desired_service(catalog, ms, sid, "https://github.com/pikasTech/unidesk", A[:12], environment(env), A)


def codes_of(problems) -> set[str]:
    return {str(p.code) for p in problems}


# ---- the catalog's environment fields -------------------------------------------------------------


def test_environment_image_and_health_url():
    c = example()
    assert desired(c, "code-queue", "dev").image == "unidesk-code-queue:dev"
    assert desired(c, "code-queue", None).image == "unidesk-code-queue:d601"
    assert c.health_url("code-queue", "dev") == "http://10.0.0.61:18080/api/microservices/code-queue/health"
    assert c.health_url("code-queue") == "http://10.0.0.1:8080/api/microservices/code-queue/health"
    doc = example_doc()
    doc["environments"]["dev"].pop("microserviceProxy")
    assert parse_catalog(json.dumps(doc)).health_url("code-queue", "dev") is None  # never the production proxy


def test_the_example_dev_slice_is_isolated():
    c = example()
    for sid in c.environments["dev"].applyEnabled:
        service = desired(c, sid, "dev")
        assert isolation_problems(service) == [], sid
        assert (service.mode, service.target, service.k8s.namespace) == ("k3sctl-managed", "D601", "unidesk-dev")
    assert isolation_problems(desired(c, "code-queue", None)) == []  # file mode: nothing to isolate


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda m, d: m["environments"]["dev"].pop("build"), "build.image is not declared"),
        (
            lambda m, d: m["environments"]["dev"].update(build={"image": m["build"]["image"]}),
            "is the image another environment runs",
        ),
        (
            lambda m, d: m["environments"]["dev"].update(build={"image": "docker.io/library/" + m["build"]["image"]}),
            "is the image another environment runs",
        ),
        (lambda m, d: m["environments"]["dev"]["k8s"].update(namespace="unidesk"), "k8s.namespace is 'unidesk'"),
        (lambda m, d: m["environments"]["dev"].pop("k8s"), "k8s is not declared"),
        (lambda m, d: m["environments"]["dev"]["deployment"].update(target="D518"), "deployment target 'D518'"),
        (
            lambda m, d: m["environments"]["dev"]["deployment"].update(mode="unidesk-direct"),
            "k3sctl-managed services only",
        ),
        (lambda m, d: m.pop("environments"), "is not declared: an dev apply would run the production deployment"),
    ],
)
def test_unisolated_dev_runs_are_refused_before_any_step(change, needle):
    doc = example_doc()
    ms = next(m for m in doc["microservices"] if m["id"] == "code-queue")
    change(ms, doc)
    service = desired(parse_catalog(json.dumps(doc)), "code-queue", "dev")
    problems = isolation_problems(service)
    assert codes_of(problems) == {ErrorCode.ENVIRONMENT_ISOLATION} and any(needle in p.message for p in problems), (
        problems
    )
    with pytest.raises(UnideskError) as exc:
        executor_for(service.mode).steps(service)
    assert exc.value.problems[0].code == ErrorCode.ENVIRONMENT_ISOLATION


def test_legacy_twin_step_never_runs_for_an_environment():
    c = example()
    dev = [s.name for s in executor_for("k3sctl-managed").steps(desired(c, "code-queue", "dev"))]
    prod = [s.name for s in executor_for("k3sctl-managed").steps(desired(c, "decision-center", None))]
    assert "legacy-twin" not in dev and "legacy-twin" in prod
    # an environment run adds its validate gate and drops the production twin's removal
    assert [n for n in dev if n != "validate"] == [n for n in prod if n != "legacy-twin"]
    assert dev.index("k8s-manifest") < dev.index("validate") < dev.index("build")


def test_legacy_twin_is_only_the_declared_project_and_service():
    rows = [
        {
            "Id": "1",
            "Labels": {"com.docker.compose.project": "code-queue", "com.docker.compose.service": "code-queue-backend"},
        },
        {
            "Id": "2",
            "Labels": {"com.docker.compose.project": "unidesk", "com.docker.compose.service": "code-queue-backend"},
        },
        {"Id": "3", "Labels": {"com.docker.compose.project": "code-queue", "com.docker.compose.service": "code-queue"}},
        {"Id": "4", "Labels": {"com.docker.compose.service": "code-queue-backend"}},
    ]
    assert [r["Id"] for r in twin_rows(rows, "code-queue", "code-queue-backend")] == ["1"]


# ---- the shipped example manifests ----------------------------------------------------------------


def shipped_runs():
    c = example()
    runs = []
    for ms in c.microservices:
        for env in (None, *ms.environments):
            service = desired(c, ms.id, env)
            if service.mode == "k3sctl-managed" and service.k8s is not None:
                runs.append((ms.id, env))
    return runs


@pytest.mark.parametrize(("sid", "env"), shipped_runs())
def test_shipped_example_manifests_render_bound_to_the_built_image(sid, env):
    service = desired(example(), sid, env)
    text = (EXAMPLES / service.k8s.manifest).read_text()
    objects = render(text, service.k8s, sid, service.image, deploy_env(sid, service.repo, A, A[:12]))
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert sorted(o["metadata"]["name"] for o in deployments) == sorted(service.k8s.deployments)
    assert all(o["metadata"]["namespace"] == service.k8s.namespace for o in objects)
    fixed = {where: image for where, image in fixed_images(objects, service.image)}
    for dep in deployments:
        for container in dep["spec"]["template"]["spec"]["containers"]:
            where = f"Deployment/{dep['metadata']['name']}/{container['name']}"
            assert (
                containerd_name(container["image"]) == containerd_name(service.image)
                or fixed[where] == container["image"]
            )
    assert set(fixed) <= {"Deployment/d601-dev-provider-egress-proxy/d601-dev-provider-egress-proxy"}
    assert leftovers(objects) == set()


def test_dev_core_manifest_takes_the_dev_image_tag():
    service = desired(example(), "backend-core", "dev")
    text = (EXAMPLES / service.k8s.manifest).read_text()
    objects = render(
        text, service.k8s, "backend-core", "unidesk-backend-core:dev", deploy_env("backend-core", service.repo, A, A)
    )
    assert objects[0]["spec"]["template"]["spec"]["containers"][0]["image"] == "unidesk-backend-core:dev"
    assert image_tag("unidesk-backend-core:dev") == "dev" and image_tag("reg:5000/x/y") == "latest"


def test_render_refuses_another_image_or_a_leftover_placeholder():
    service = desired(example(), "code-queue", "dev")
    text = (EXAMPLES / service.k8s.manifest).read_text()
    env = deploy_env("code-queue", service.repo, A, A)
    with pytest.raises(UnideskError) as exc:  # a templated image that is not the one built
        render(
            text.replace("unidesk-code-queue:__DEV_IMAGE_TAG__", "unidesk-other:__DEV_IMAGE_TAG__", 1),
            service.k8s,
            "code-queue",
            service.image,
            env,
        )
    assert "not the built image unidesk-code-queue:dev" in exc.value.problems[0].message
    # a fixed image (no placeholder) is kept as declared; the validate step requires it in containerd
    objects = render(text, service.k8s, "code-queue", service.image, env)
    assert fixed_images(objects, service.image) == [
        ("Deployment/d601-dev-provider-egress-proxy/d601-dev-provider-egress-proxy", "unidesk-provider-egress:dev")
    ]
    with pytest.raises(UnideskError) as exc:
        render(text.replace("D601-dev", "__PROVIDER_ID__", 1), service.k8s, "code-queue", service.image, env)
    assert "__PROVIDER_ID__" in exc.value.problems[0].message


# ---- apply refuses before any job ----------------------------------------------------------------


def test_dev_apply_that_could_touch_production_is_refused_before_any_job(git_world):
    """The real executors (no workload): backend-core's dev override builds no dev image, frontend
    has no dev override at all; neither may start a job."""
    w = git_world
    ws = Workspace.at(w.workspace, w.root / "state")
    config = json.loads((w.workspace / "config.json").read_text())
    del next(m for m in config["microservices"] if m["id"] == "backend-core")["environments"]["dev"]["build"]
    (w.workspace / "config.json").write_text(json.dumps(config))
    w.push_env(
        "dev",
        w.manifest(
            [
                {"id": "backend-core", "repo": w.service_url, "commitId": w.pushed[1]},
                {"id": "frontend", "repo": w.service_url, "commitId": w.pushed[1]},
            ],
            environment="dev",
        ),
    )
    doc = apply(ws, env="dev")
    assert not doc.ok and doc.jobId is None
    assert {e.code for e in doc.errors} == {ErrorCode.ENVIRONMENT_ISOLATION}
    assert {e.service for e in doc.errors} == {"backend-core", "frontend"}
    assert jobs.list_jobs(ws.state_dir) == []


def test_an_environment_build_may_start_from_the_production_build_base():
    """Spec (D601 Dev Code Queue): without a dev build base, reuse d601-build-base, then d601."""
    from executors.build import base_candidates

    assert base_candidates("unidesk-code-queue:dev", "unidesk-code-queue:d601") == [
        "unidesk-code-queue:dev-build-base",
        "unidesk-code-queue:d601-build-base",
        "unidesk-code-queue:d601",
    ]
    assert base_candidates("unidesk-code-queue:d601") == ["unidesk-code-queue:d601-build-base"]


def test_the_plan_agrees_with_apply_on_every_service(git_world):
    """applyEnabled is true exactly when `deploy apply --env dev --service X` accepts X (no job is
    needed to tell: a refusal comes before any job); a refused service's plan reason is apply's."""
    from unidesk_tui.planning import run_plan

    w = git_world
    ws = Workspace.at(w.workspace, w.root / "state")
    ids = ("backend-core", "frontend", "code-queue-mgr")  # isolated; enabled but no dev override; not enabled
    w.push_env(
        "dev",
        w.manifest([{"id": sid, "repo": w.service_url, "commitId": w.pushed[1]} for sid in ids], environment="dev"),
    )
    for sid in ids:
        plan = {i.id: i for i in run_plan(ws, "plan", env="dev", services=[sid]).document.services}
        refused = [e for e in apply(ws, env="dev", services=[sid], dry_run=True).errors]
        assert plan[sid].applyEnabled is (not refused), (sid, plan[sid], refused)
        for e in refused:
            assert (
                e.code in (ErrorCode.SERVICE_NOT_ENABLED, ErrorCode.ENVIRONMENT_ISOLATION)
                and e.message in plan[sid].reason
            )
    whole = {i.id: i.applyEnabled for i in run_plan(ws, "plan", env="dev").document.services}
    assert whole == {"backend-core": True, "frontend": False, "code-queue-mgr": False}
