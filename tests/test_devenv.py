"""`dev-env validate`: the example dev manifests pass; each guardrail catches its violation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unidesk_tui.devenv import CODE_QUEUE, CORE, DEV_DIR, FOUNDATION, validate_manifest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "unidesk"


def mutate(tmp_path: Path, name: str, change) -> Path:
    docs = [d for d in yaml.safe_load_all((EXAMPLE / DEV_DIR / name).read_text()) if d]
    change(docs)
    out = tmp_path / name
    out.write_text(yaml.safe_dump_all(docs))
    return out


def by(docs, kind, name):
    return next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)


def set_env(obj, name, value):
    env = obj["spec"]["template"]["spec"]["containers"][0]["env"]
    next(e for e in env if e["name"] == name)["value"] = value


def messages(path: Path) -> list[str]:
    return [p.message for p in validate_manifest(path).problems]


def test_example_dev_manifests_pass_through_the_cli():
    proc = subprocess.run(
        [sys.executable, "-m", "unidesk_tui.cli", "--workspace", str(EXAMPLE), "dev-env", "validate"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    doc = json.loads(proc.stdout)
    assert proc.returncode == 0 and doc["ok"], doc["errors"]
    assert [Path(m["path"]).name for m in doc["manifests"]] == [FOUNDATION, CORE, CODE_QUEUE]


@pytest.mark.parametrize(
    ("name", "change", "expect"),
    [
        (
            CORE,
            lambda d: by(d, "Deployment", "backend-core-dev")["metadata"].update(namespace="unidesk"),
            "only in unidesk-dev",
        ),
        (
            CORE,
            lambda d: d.append(
                {"kind": "Deployment", "metadata": {"name": "backend-core", "namespace": "unidesk-dev"}, "spec": {}}
            ),
            "not one of the objects",
        ),
        (
            CORE,
            lambda d: set_env(
                by(d, "Deployment", "frontend-dev"),
                "CORE_INTERNAL_URL",
                "http://backend-core.unidesk.svc.cluster.local:8080",
            ),
            "CORE_INTERNAL_URL",
        ),
        (CORE, lambda d: by(d, "Service", "frontend-dev")["spec"].update(type="NodePort"), "ClusterIP"),
        (
            CODE_QUEUE,
            lambda d: by(d, "Deployment", "code-queue-read-dev")["spec"]["template"]["spec"]["containers"][0][
                "resources"
            ]["limits"].pop("cpu"),
            "CPU and memory limits",
        ),
        (
            CODE_QUEUE,
            lambda d: by(d, "Deployment", "code-queue-scheduler-dev")["spec"]["template"]["spec"]["containers"][0][
                "resources"
            ]["limits"].update(memory="8Gi"),
            "5Gi memory limit",
        ),
        (
            CODE_QUEUE,
            lambda d: by(d, "Deployment", "code-queue-write-dev")["spec"]["template"]["spec"]["containers"][0][
                "env"
            ].append({"name": "EGRESS", "value": "http://d601-tcp-egress-gateway:1080"}),
            "production route",
        ),
        (
            FOUNDATION,
            lambda d: by(d, "StatefulSet", "postgres-dev")["spec"]["template"]["spec"]["containers"][0]["env"].append(
                {"name": "DATABASE_URL", "value": "postgres://db:5432/unidesk"}
            ),
            "unidesk_dev",
        ),
        (
            FOUNDATION,
            lambda d: by(d, "Namespace", "unidesk-dev")["metadata"].update(name="unidesk"),
            "only the unidesk-dev namespace",
        ),
    ],
)
def test_each_guardrail(tmp_path, name, change, expect):
    got = messages(mutate(tmp_path, name, change))
    assert any(expect in m for m in got), got


def test_invalid_yaml_names_the_line(tmp_path):
    bad = tmp_path / CORE
    bad.write_text("kind: Deployment\nmetadata: {name: x\n")
    assert "line" in messages(bad)[0]


@pytest.mark.parametrize(
    "content",
    [
        b"\xff\xfe",
        b"kind: Deployment\nmetadata: [1]\n",
        b"kind: Deployment\nmetadata: {name: x, namespace: unidesk-dev}\nspec: [1]\n",
        b"kind: Deployment\nmetadata: {name: x, namespace: unidesk-dev}\nspec: {template: {spec: {containers: "
        b"[{name: c, ports: [1]}]}}}\n",
        b"- 1\n- 2\n",
        b"kind: [x]\n",
    ],
)
def test_odd_input_gives_coded_problems_not_exceptions(tmp_path, content):
    path = tmp_path / CORE
    path.write_bytes(content)
    report = validate_manifest(path)
    assert report.problems and all(p.code == "dev_manifest_invalid" for p in report.problems)


def test_a_directory_is_a_coded_problem(tmp_path):
    (tmp_path / CORE).mkdir()
    assert [p.code for p in validate_manifest(tmp_path / CORE).problems] == ["dev_manifest_invalid"]


# ---- one test per named rule (devrules.RULES): the example passes, one change breaks exactly that rule


def container(docs, kind, name):
    return by(docs, kind, name)["spec"]["template"]["spec"]["containers"][0]


def drop_env(obj_container, name):
    obj_container["env"] = [e for e in obj_container["env"] if e["name"] != name]


RULE_CASES = {
    "namespace": (CORE, lambda d: by(d, "Service", "frontend-dev")["metadata"].update(namespace="unidesk")),
    "allowed-objects": (
        CODE_QUEUE,
        lambda d: by(d, "Service", "code-queue-read-dev")["metadata"].update(name="code-queue-dev"),
    ),
    "cluster-ip-only": (
        CODE_QUEUE,
        lambda d: by(d, "Service", "code-queue-write-dev")["spec"].update(type="LoadBalancer"),
    ),
    "no-host-network": (
        CORE,
        lambda d: by(d, "Deployment", "frontend-dev")["spec"]["template"]["spec"].update(hostNetwork=True),
    ),
    "production-reference": (
        CORE,
        lambda d: container(d, "Deployment", "frontend-dev")["env"].append(
            {"name": "UPSTREAM", "value": "http://postgres.unidesk.svc:5432"}
        ),
    ),
    "container-limits": (FOUNDATION, lambda d: container(d, "StatefulSet", "postgres-dev")["resources"].pop("limits")),
    "dev-database": (CODE_QUEUE, lambda d: drop_env(container(d, "Deployment", "code-queue-read-dev"), "DATABASE_URL")),
    "runtime-config": (CORE, lambda d: container(d, "Deployment", "backend-core-dev")["envFrom"].pop()),
    "backend-core-ports": (
        CORE,
        lambda d: container(d, "Deployment", "backend-core-dev").update(ports=[{"containerPort": 8080}]),
    ),
    "backend-core-logs": (CORE, lambda d: container(d, "Deployment", "backend-core-dev").update(volumeMounts=[])),
    "frontend-core-url": (CORE, lambda d: drop_env(container(d, "Deployment", "frontend-dev"), "CORE_INTERNAL_URL")),
    "code-queue-state": (
        CODE_QUEUE,
        lambda d: set_env(by(d, "Deployment", "code-queue-write-dev"), "CODE_QUEUE_STATE_DIR", "/tmp/state"),
    ),
    "code-queue-port": (
        CODE_QUEUE,
        lambda d: by(d, "Service", "code-queue-scheduler-dev")["spec"].update(ports=[{"port": 80}]),
    ),
    "scheduler-env": (
        CODE_QUEUE,
        lambda d: set_env(by(d, "Deployment", "code-queue-scheduler-dev"), "CODE_QUEUE_WORKDIR", "/workspace"),
    ),
    "notifications-off": (
        CODE_QUEUE,
        lambda d: set_env(by(d, "Deployment", "code-queue-read-dev"), "CODE_QUEUE_NOTIFY_CLAUDEQQ", "true"),
    ),
    "scheduler-memory": (
        CODE_QUEUE,
        lambda d: container(d, "Deployment", "code-queue-scheduler-dev")["resources"]["limits"].update(memory="1Gi"),
    ),
    "postgres-volume": (FOUNDATION, lambda d: by(d, "StatefulSet", "postgres-dev")["spec"].pop("volumeClaimTemplates")),
    "migrate-job": (
        FOUNDATION,
        lambda d: container(d, "Job", "unidesk-dev-db-migrate").update(
            args=[container(d, "Job", "unidesk-dev-db-migrate")["args"][0].replace("sh /guard/guard.sh\n", "")]
        ),
    ),
}


def test_every_rule_has_a_case():
    from unidesk_tui.devrules import RULES

    assert set(RULE_CASES) == set(RULES)


@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_rule(tmp_path, rule):
    name, change = RULE_CASES[rule]
    assert messages(EXAMPLE / DEV_DIR / name) == []
    got = validate_manifest(mutate(tmp_path, name, change)).problems
    assert got and {p.code for p in got} == {"dev_manifest_invalid"}, got
    assert any(p.message.endswith(f"[rule {rule}]") for p in got), [p.message for p in got]
    assert all("/" in (p.path or "") for p in got)  # names the object (Kind/name)


def test_the_lab_sample_dev_manifests_pass():
    lab = Path(__file__).resolve().parent.parent / "unidesk_lab" / "assets" / "sample-service" / "k3s" / "dev"
    for name in (FOUNDATION, CORE, CODE_QUEUE):
        assert messages(lab / name) == [], name


def test_the_validate_step_judges_objects_without_the_deploy_stamps():
    """A stamped repository URL such as https://github.com/pikasTech/unidesk is not a production route."""
    from executors.k8s_manifest import stamp_deployment
    from executors.stamp import deploy_env
    from executors.validate import rule_problems, unstamped

    docs = [d for d in yaml.safe_load_all((EXAMPLE / DEV_DIR / CORE).read_text()) if d]
    env = deploy_env("backend-core", "https://github.com/pikasTech/unidesk", "a" * 40, "a" * 40)
    stamped = [stamp_deployment(d, env, restart=True) if d["kind"] == "Deployment" else d for d in docs]
    assert "https://github.com/pikasTech/unidesk" in yaml.safe_dump_all(stamped)
    assert rule_problems(stamped, DEV_DIR + "/" + CORE, "backend-core") == []
    assert "UNIDESK_DEPLOY_REPO" not in yaml.safe_dump(unstamped(stamped[0]))
    broken = stamped[:1] + [{**stamped[1], "spec": {**stamped[1]["spec"], "type": "NodePort"}}]
    [problem] = rule_problems(broken, CORE, "backend-core")
    assert problem.service == "backend-core" and problem.path == "Service/backend-core-dev"
    assert problem.message.endswith("[rule cluster-ip-only]")
