"""Provenance the reconciler can prove (issue 11), end to end in the lab.

Every defect is reproduced the way an operator meets it, with real programs: `docker commit` of a
hand-edited container, a compose file without the deploy-env lines, a provider container created
with a relative `-f` or under a project config.json no longer names, a fake pause image already
in containerd, a containerized k3s running on the node, and a commit whose container exits at
start. The runtime is read back with the docker CLI, ctr and the API server on the hosts.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import (  # noqa: E402
    apply,
    apply_and_wait,
    cli,
    clone_sample,
    compose_container,
    compose_up,
    deploy_stamps,
    kube_request,
    push_variant,
    running_image_commit,
    service,
    service_steps,
    ssh,
    texts,
    workspace_with,
    write_manifest,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

MAIN, D518, D601 = "main-server", "D518", "D601"
CRASH_LINE = "provenance-test: refusing to start"


@pytest.fixture(scope="module")
def crash_commit(lab, tmp_path_factory) -> str:
    """A commit (on its own branch, from `new`) whose container prints one line and exits 3 at start."""
    return push_variant(
        clone_sample(lab, tmp_path_factory.mktemp("sample")),
        "test-provenance-crash",
        lab["content"]["new"],
        "app/entrypoint.sh",
        lambda t: t.replace("set -e\n", f'set -e\necho "{CRASH_LINE}"\nexit 3\n', 1),
        "test: a container that exits at start",
    )


def check(lab, state: Path, manifest: Path, workspace: Path | None = None) -> dict:
    _, doc = cli(lab, state, "deploy", "check", "--file", str(manifest), workspace=workspace)
    return doc["services"][0]


def verdict(item: dict) -> tuple[str, str, str]:
    """A checked service's action, live state and identity status."""
    return item["action"], item["live"]["state"], item["live"]["evidence"]["identity"]["status"]


def failures(doc: dict) -> list[tuple[str, str, str | None, str | None]]:
    """(service, step, code, message) of every failed step: what an assertion should show."""
    return [
        (s["service"], s["name"], s.get("code"), s.get("message"))
        for s in (doc.get("job") or {}).get("steps", [])
        if s["status"] == "failed"
    ] or doc.get("errors")


def other_than(lab, current: str | None) -> str:
    return lab["content"]["new"] if current != lab["content"]["new"] else lab["content"]["old"]


def docker_inspect(lab, host: str, fmt: str, *names: str) -> str:
    return ssh(lab, host, ["docker", "inspect", "--format", fmt, *names]).stdout.decode().strip()


def deploy_env_of(lab, host: str, container: str) -> dict[str, str]:
    env = json.loads(docker_inspect(lab, host, "{{json .Config.Env}}", container))
    return {k: v for k, _, v in (e.partition("=") for e in env) if k.startswith("UNIDESK_DEPLOY_")}


def test_recommitted_container_with_original_labels_and_env_is_not_in_sync(lab, tmp_path):
    """docker commit copies labels and env: only the target-side build record tells the images apart."""
    repo, sid = lab["content"]["sampleRepo"], "backend-core"
    ms = service(lab, sid)
    want = other_than(lab, running_image_commit(lab, MAIN, "unidesk", sid))
    manifest = write_manifest(tmp_path / "deploy.json", repo, {sid: want})
    rc, doc, _ = apply_and_wait(lab, tmp_path / "state", manifest)
    assert rc == 0 and doc["job"]["status"] == "succeeded", failures(doc)
    item = check(lab, tmp_path / "state", manifest)
    assert verdict(item) == ("noop", "in-sync", "proven"), item
    built = item["live"]["evidence"]["identity"]["recorded"]
    # the record and the commit tag on the target say which image was built for `want`
    work = next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == MAIN)["workDir"]
    record = json.loads(ssh(lab, MAIN, ["cat", f"{work}/provenance/{sid}/base/{want}.json"]).stdout)
    assert (record["imageId"], record["commitTag"]) == (built, f"{ms['build']['image']}-{want[:12]}")
    assert docker_inspect(lab, MAIN, "{{.Id}}", record["commitTag"]) == built

    # hand-mutate the running container, commit it over the service's tag, recreate with the same stamps
    cid = compose_container(lab, MAIN, "unidesk", sid)
    ssh(lab, MAIN, ["docker", "exec", cid, "sh", "-c", "echo hand-edited > /app/www/index.html"])
    ssh(lab, MAIN, ["docker", "commit", cid, ms["build"]["image"]])
    compose_up(
        lab,
        MAIN,
        ms,
        deploy_stamps(repo, want),
    )
    cid = compose_container(lab, MAIN, "unidesk", sid)
    committed = docker_inspect(lab, MAIN, "{{.Image}}", cid)
    assert committed != built and running_image_commit(lab, MAIN, "unidesk", sid) == want
    assert deploy_env_of(lab, MAIN, cid)["UNIDESK_DEPLOY_COMMIT"] == want

    item = check(lab, tmp_path / "state", manifest)
    assert (item["live"]["state"], item["action"]) == ("provenance-mismatch", "deploy"), item
    identity = item["live"]["evidence"]["identity"]
    assert (identity["status"], identity["running"], identity["recorded"]) == ("mismatch", committed, built), identity
    assert committed[:19] in item["live"]["message"] and built[:19] in item["live"]["message"], item["live"]

    rc, doc, log = apply_and_wait(lab, tmp_path / "state", manifest)
    events = texts(log)
    assert rc == 0 and doc["job"]["status"] == "succeeded", failures(doc)
    assert any(t.startswith("verified: ") and "identity" in t for t in events), events
    item = check(lab, tmp_path / "state", manifest)
    assert verdict(item) == ("noop", "in-sync", "proven"), item
    assert (
        ssh(
            lab, MAIN, ["docker", "exec", compose_container(lab, MAIN, "unidesk", sid), "cat", "/app/www/index.html"]
        ).stdout
        != b"hand-edited\n"
    )

    # upgrade path: an image built before records existed is reported, never a mismatch
    path = f"{work}/provenance/{sid}/base/{want}.json"
    saved = ssh(lab, MAIN, ["cat", path]).stdout
    ssh(lab, MAIN, ["rm", "-f", "--", path])
    try:
        item = check(lab, tmp_path / "state", manifest)
        assert verdict(item) == ("noop", "in-sync", "unrecorded"), item
        assert "no build record" in item["live"]["message"], item
    finally:
        ssh(lab, MAIN, ["sh", "-c", 'cat > "$1"', "sh", path], input=saved)


def test_compose_file_without_deploy_env_lines_is_stamped_through_an_override(lab, tmp_path):
    repo, sid = lab["content"]["sampleRepo"], "code-queue-mgr"
    ms = service(lab, sid)
    original = Path(ms["compose"]["file"])
    bare = original.with_name("docker-compose.no-deploy-env.yml")
    text = "".join(
        line
        for line in original.read_text().splitlines(keepends=True)
        if "UNIDESK_DEPLOY_" not in line or line.lstrip().startswith("#")
    )
    assert "UNIDESK_DEPLOY_" not in "".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    bare.write_text(text)
    digest = hashlib.sha256(text.encode()).hexdigest()

    def edit(cfg: dict) -> None:
        next(m for m in cfg["microservices"] if m["id"] == sid)["compose"]["file"] = str(bare)

    ws = workspace_with(lab, tmp_path, edit)
    want = other_than(lab, running_image_commit(lab, MAIN, "unidesk", sid))
    manifest = write_manifest(ws / "deploy.json", repo, {sid: want})
    try:
        rc, doc, log = apply_and_wait(lab, tmp_path / "state", manifest, workspace=ws)
        events = texts(log)
        assert rc == 0 and doc["job"]["status"] == "succeeded", failures(doc)
        override = next(t.split("=", 1)[1].split()[0] for t in events if t.startswith("compose_deploy_override="))
        assert Path(override).parent == bare.parent and Path(override).exists()
        assert hashlib.sha256(bare.read_bytes()).hexdigest() == digest  # never edited
        env = deploy_env_of(lab, MAIN, compose_container(lab, MAIN, "unidesk", sid))
        assert env == {
            "UNIDESK_DEPLOY_SERVICE_ID": sid,
            "UNIDESK_DEPLOY_REPO": repo,
            "UNIDESK_DEPLOY_COMMIT": want,
            "UNIDESK_DEPLOY_REQUESTED_COMMIT": want,
        }, env
        item = check(lab, tmp_path / "state", manifest, workspace=ws)
        assert (item["action"], item["live"]["state"]) == ("noop", "in-sync"), item
    finally:
        compose_up(
            lab,
            MAIN,
            ms,
            deploy_stamps(repo, want),
        )
        bare.unlink(missing_ok=True)


def test_provider_container_from_relative_compose_file_under_a_stale_project_name_deploys(lab, tmp_path):
    """Both blockers at once: the running container was created with a relative `-f`, and
    config.json names a project it no longer belongs to (reported as stale, not fatal)."""
    repo, sid = lab["content"]["sampleRepo"], "d518-worker"
    ms = service(lab, sid)
    compose_file = Path(ms["compose"]["file"])
    current = running_image_commit(lab, D518, "unidesk", sid)
    stamps = deploy_stamps(repo, current)
    # recreated by hand from the compose file's directory with a relative -f, as operators do
    ssh(
        lab,
        D518,
        [
            "sh",
            "-c",
            'cd "$1" && shift && exec "$@"',
            "sh",
            str(compose_file.parent),
            "docker-compose",
            "-p",
            "unidesk",
            "-f",
            compose_file.name,
            "up",
            "-d",
            "--no-build",
            "--no-deps",
            "--force-recreate",
            sid,
        ],
        env=stamps,
    )
    cid = compose_container(lab, D518, "unidesk", sid)
    assert (
        docker_inspect(lab, D518, '{{index .Config.Labels "com.docker.compose.project.config_files"}}', cid)
        == compose_file.name
    )

    def stale(cfg: dict) -> None:
        next(m for m in cfg["microservices"] if m["id"] == sid)["compose"]["project"] = "unidesk-renamed"

    ws = workspace_with(lab, tmp_path, stale)
    want = other_than(lab, current)
    manifest = write_manifest(ws / "deploy.json", repo, {sid: want})
    rc, doc, log = apply_and_wait(lab, tmp_path / "state", manifest, workspace=ws)
    events = texts(log)
    assert rc == 0 and doc["job"]["status"] == "succeeded", failures(doc)
    assert (
        f"compose_project=unidesk compose_service={sid} compose_files={compose_file} working_dir={compose_file.parent}"
        in events
    ), events
    assert any("config.json compose.project unidesk-renamed is stale" in t for t in events), events
    assert any(t.startswith("compose_build=none declared") and "fallback" in t for t in events), (
        events
    )  # config.json build, logged
    assert running_image_commit(lab, D518, "unidesk", sid) == want
    names = ssh(lab, D518, ["docker", "ps", "-a", "--format", "{{.Names}}"]).stdout.decode().split()
    assert not any(n.startswith("unidesk-renamed") for n in names), names  # no second copy under the stale name
    item = check(lab, tmp_path / "state", manifest, workspace=ws)
    assert (item["action"], item["live"]["state"]) == ("noop", "in-sync"), item


def ctr(lab, *args: str, check: bool = True):
    node = next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == D601)["k3s"]
    return ssh(
        lab, D601, ["ctr", "-a", node["containerdSocket"], "-n", node["containerdNamespace"], *args], check=check
    )


def pause_ref(lab) -> str:
    return next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == D601)["k3s"][
        "pauseImage"
    ]


def k3s_commit(lab, sid: str) -> str | None:
    ms = service(lab, sid)
    live = kube_request(
        lab, "GET", f"/apis/apps/v1/namespaces/{ms['k8s']['namespace']}/deployments/{ms['k8s']['deployments'][0]}"
    )
    return (live.get("metadata", {}).get("annotations") or {}).get("UNIDESK_DEPLOY_COMMIT")


def test_k3s_deploy_replaces_a_fake_pause_image_and_stops_a_containerized_k3s(lab, tmp_path):
    repo, sid = lab["content"]["sampleRepo"], "decision-center"
    real = pause_ref(lab)
    fake = real.rsplit(":", 1)[0] + ":fake"
    # a sleep-based impostor already sits under the real name (pulled through D601's egress by hand)
    node = next(t for t in json.loads(Path(lab["config"]).read_text())["targets"] if t["id"] == D601)["k3s"]
    ssh(
        lab,
        D601,
        [
            "ctr",
            "-a",
            node["containerdSocket"],
            "-n",
            node["containerdNamespace"],
            "images",
            "pull",
            "--plain-http",
            fake,
        ],
        env={"HTTP_PROXY": "http://127.0.0.1:18789"},
    )
    ctr(lab, "images", "rm", real, check=False)
    ctr(lab, "images", "tag", fake, real)
    # a containerized k3s server runs on the node (any local image under the rancher/k3s name will do)
    source = service(lab, "d518-worker")["build"]["image"]
    if ssh(lab, D601, ["docker", "image", "inspect", source], check=False).returncode != 0:
        ssh(lab, D601, ["docker", "load"], input=ssh(lab, D518, ["docker", "save", source]).stdout)
    ssh(lab, D601, ["docker", "tag", source, "rancher/k3s:v1.30.4-k3s1"])
    ssh(lab, D601, ["docker", "rm", "-f", "k3s-server"], check=False)
    ssh(
        lab,
        D601,
        [
            "docker",
            "run",
            "-d",
            "--init",
            "--name",
            "k3s-server",
            "--network",
            "none",
            "-e",
            "PORT=16443",
            "rancher/k3s:v1.30.4-k3s1",
        ],
    )
    try:
        want = other_than(lab, k3s_commit(lab, sid))
        rc, doc, log = apply_and_wait(
            lab, tmp_path / "state", write_manifest(tmp_path / "deploy.json", repo, {sid: want})
        )
        events = texts(log)
        assert rc == 0 and doc["job"]["status"] == "succeeded", failures(doc)
        assert any(
            t.startswith(f"k3s_pause_image_replaced={real}") and '["/bin/sleep", "infinity"]' in t for t in events
        ), events
        assert "k3s_pause_image_entrypoint=/pause" in events
        assert any(t.startswith("k3s_containerized_stopped=k3s-server") and "rancher/k3s" in t for t in events), events
        assert docker_inspect(lab, D601, "{{.State.Running}}", "k3s-server") == "false"
        # read back on D601: the image under the real name now runs /pause
        digest = next(
            cols[2]
            for cols in (line.split() for line in ctr(lab, "images", "ls").stdout.decode().splitlines()[1:])
            if cols and cols[0] == real
        )
        config = json.loads(
            ctr(lab, "content", "get", json.loads(ctr(lab, "content", "get", digest).stdout)["config"]["digest"]).stdout
        )
        assert config["config"]["Entrypoint"] == ["/pause"]
        assert k3s_commit(lab, sid) == want
        # identity in k3s: the image containerd holds under the name the Deployment runs, against the record
        manifest = tmp_path / "deploy.json"
        item = check(lab, tmp_path / "state", manifest)
        assert verdict(item) == ("noop", "in-sync", "proven"), item
        name = "docker.io/library/" + service(lab, sid)["build"]["image"]
        ctr(lab, "images", "tag", "--force", name, name + "-saved")
        ctr(lab, "images", "tag", "--force", real, name)  # a look-alike under the Deployment's image name
        try:
            item = check(lab, tmp_path / "state", manifest)
            identity = item["live"]["evidence"]["identity"]
            assert (item["live"]["state"], item["action"], identity["status"]) == (
                "provenance-mismatch",
                "deploy",
                "mismatch",
            ), item
            assert (
                identity["running"] != identity["recorded"] and identity["recorded"][:19] in item["live"]["message"]
            ), item
        finally:
            ctr(lab, "images", "tag", "--force", name + "-saved", name)
            ctr(lab, "images", "rm", name + "-saved", check=False)
    finally:
        ssh(lab, D601, ["docker", "rm", "-f", "k3s-server"], check=False)
        ctr(lab, "images", "rm", fake, check=False)


def test_absent_native_k3s_is_a_clear_error_before_anything_runs(lab, tmp_path):
    def no_kubeconfig(cfg: dict) -> None:
        next(t for t in cfg["targets"] if t["id"] == D601)["k3s"]["kubeconfig"] = "/etc/rancher/k3s/absent.yaml"

    ws = workspace_with(lab, tmp_path, no_kubeconfig)
    manifest = write_manifest(
        ws / "deploy.json", lab["content"]["sampleRepo"], {"decision-center": lab["content"]["new"]}
    )
    item = check(lab, tmp_path / "state", manifest, workspace=ws)
    assert (
        item["live"]["state"] == "error"
        and "no native k3s on D601: kubeconfig /etc/rancher/k3s/absent.yaml" in item["live"]["message"]
    ), item
    rc, doc = apply(lab, tmp_path / "state", manifest, "--wait", workspace=ws)
    assert rc != 0 and not doc.get("jobId") and "no native k3s on D601" in json.dumps(doc["errors"]), (
        doc
    )  # refused before any job

    dead = tmp_path / "containerd.sock"  # a socket file nobody listens on any more (hosts share this filesystem)
    dead.write_text("")

    def no_containerd(cfg: dict) -> None:
        next(t for t in cfg["targets"] if t["id"] == D601)["k3s"]["containerdSocket"] = str(dead)

    ws = workspace_with(lab, tmp_path / "b", no_containerd)
    manifest = write_manifest(
        ws / "deploy.json", lab["content"]["sampleRepo"], {"decision-center": lab["content"]["new"]}
    )
    rc, doc, _ = apply_and_wait(lab, tmp_path / "state", manifest, "--force", workspace=ws)
    assert rc != 0 and doc["job"]["status"] == "failed", doc
    st = service_steps(doc, "decision-center")
    assert st["k3s-preflight"]["code"] == "k3s_not_native", st["k3s-preflight"]
    assert f"no native k3s on D601: containerd at {dead}" in st["k3s-preflight"]["message"], st["k3s-preflight"]
    assert all(s["status"] == "skipped" for n, s in st.items() if n != "k3s-preflight"), st


def test_commit_whose_container_exits_at_start_fails_rollout_fast_with_its_exit_code(lab, tmp_path, crash_commit):
    repo = lab["content"]["sampleRepo"]
    manifest = write_manifest(tmp_path / "deploy.json", repo, {"decision-center": crash_commit})
    rc, doc, _ = apply_and_wait(lab, tmp_path / "state", manifest)
    assert rc != 0 and doc["job"]["status"] == "failed", doc
    st = service_steps(doc, "decision-center")["k8s-rollout"]
    assert st["status"] == "failed" and st["code"] == "rollout_failed", st
    assert st["durationMs"] < 30_000, st
    assert "exit code 3" in st["message"] and CRASH_LINE in st["message"], st["message"]


def test_crash_looping_previous_version_is_replaced_by_a_good_commit(lab, tmp_path, crash_commit):
    """The rollout judges only the new template's pod: a crash-looping previous pod does not fail it."""
    repo = lab["content"]["sampleRepo"]
    rc, doc, _ = apply_and_wait(  # --no-restore: the crash-looping version stays (else the old one is restored)
        lab,
        tmp_path / "state",
        write_manifest(tmp_path / "crash.json", repo, {"decision-center": crash_commit}),
        "--no-restore",
    )
    assert rc != 0 and service_steps(doc, "decision-center")["k8s-rollout"]["code"] == "rollout_failed", doc
    rc, doc, _ = apply_and_wait(
        lab,
        tmp_path / "state",
        write_manifest(tmp_path / "good.json", repo, {"decision-center": lab["content"]["new"]}),
    )
    assert rc == 0 and doc["job"]["status"] == "succeeded", doc
    assert service_steps(doc, "decision-center")["k8s-rollout"]["status"] == "succeeded", doc


def test_apply_after_the_same_commits_pod_was_killed_judges_the_new_pod(lab, tmp_path):
    """Trial: the running pod was killed (exit 137, CrashLoopBackOff); re-applying the same commit
    failed with rollout_failed naming that OLD pod, though the new one came up fine."""
    from unidesk_lab.kubecontroller import key_prefix

    ms = service(lab, "decision-center")
    ns, name = ms["k8s"]["namespace"], ms["k8s"]["deployments"][0]
    manifest = write_manifest(
        tmp_path / "good.json", lab["content"]["sampleRepo"], {"decision-center": lab["content"]["new"]}
    )
    rc, doc, _ = apply_and_wait(lab, tmp_path / "state", manifest)
    assert rc == 0, doc
    prefix = key_prefix(("Deployment", ns, name))
    running = [
        line.split()[0]
        for line in ctr(lab, "tasks", "ls").stdout.decode().splitlines()[1:]
        if line.startswith(prefix) and "RUNNING" in line
    ]
    assert running
    for cid in running:
        ctr(lab, "tasks", "kill", "-s", "SIGKILL", cid)

    def killed() -> bool:
        pods = kube_request(lab, "GET", f"/api/v1/namespaces/{ns}/pods").get("items") or []
        return any(
            p["metadata"]["name"].startswith(f"{name}-")
            and ((cs.get("lastState") or {}).get("terminated") or {}).get("exitCode") == 137
            for p in pods
            for cs in (p.get("status") or {}).get("containerStatuses") or []
        )

    deadline = time.monotonic() + 30
    while not killed():
        assert time.monotonic() < deadline, "the killed pod never showed exit code 137"
        time.sleep(0.5)
    rc, doc, _ = apply_and_wait(lab, tmp_path / "state", manifest, "--force")
    assert rc == 0 and doc["job"]["status"] == "succeeded", doc


def test_compose_container_that_exits_at_start_fails_fast_with_its_exit_code(lab, tmp_path, crash_commit):
    repo, sid = lab["content"]["sampleRepo"], "backend-core"
    before = running_image_commit(lab, MAIN, "unidesk", sid)
    manifest = write_manifest(tmp_path / "deploy.json", repo, {sid: crash_commit})
    try:
        rc, doc, _ = apply_and_wait(lab, tmp_path / "state", manifest)
        assert rc != 0 and doc["job"]["status"] == "failed", doc
        failed = next(s for s in service_steps(doc, sid).values() if s["status"] == "failed")
        assert failed["name"] in ("rollout", "verify") and failed["durationMs"] < 30_000, failed
        assert "exit code 3" in failed["message"] and CRASH_LINE in failed["message"], failed
    finally:  # the old version back (a no-op when the failed job already restored it)
        rc, doc = apply(
            lab, tmp_path / "restore", write_manifest(tmp_path / "restore.json", repo, {sid: before}), "--wait"
        )
        assert rc == 0, doc
