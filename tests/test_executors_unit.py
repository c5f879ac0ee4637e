"""Pure logic of the executors and the target pool: argv building, label parsing, state derivation."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest
import yaml

from executors.build import BuildPlan, BuildSource, build_base_image, repo_file
from executors.compose import (
    BuildDeclaration,
    ComposeTarget,
    build_from_config,
    compose_identity,
    config_version,
    image_from_config,
    repository_build,
)
from executors.compose_override import is_override, override_path, override_text
from executors.deployments import deployment_facts, rollout_status
from executors.docker_probe import ContainerFacts
from executors.health import HealthReading, classify
from executors.observe import Evidence, derive_state
from executors.proxy import ProxyScope, check_repo_for_scope, probe_argv, scope_for
from executors.source import context_path, is_context_path, mirror_path, source_step
from executors.stamp import health_commit, parse_env
from executors.verify import check_docker
from unidesk_tui.catalog import Microservice, Target
from unidesk_tui.errors import UnideskError
from unidesk_tui.model import DesiredService, Layer
from unidesk_tui.targets import RunResult, command_line, killable_command_line

A = "a" * 40
B = "b" * 40
REPO = "http://10.0.0.1/git/sample.git"


def svc(**compose) -> DesiredService:
    ms = Microservice.model_validate(
        {
            "id": "backend-core",
            "repository": {"url": REPO},
            "deployment": {"mode": "unidesk-direct", "target": "main-server"},
            "build": {"image": "unidesk-backend-core:main"},
            **({"compose": compose} if compose else {}),
        }
    )
    return DesiredService("backend-core", REPO, A[:12], ms, "unidesk-direct", "main-server", None, A)


def target(role="provider", proxy="http://127.0.0.1:18789") -> Target:
    return Target.model_validate({"id": "D518", "role": role, "ssh": {"host": "10.0.0.4"}, "egressProxy": proxy})


class TestCommandLine:
    def test_quotes_every_word_and_prefixes_env(self):
        line = command_line(["git", "fetch", "http://x/a b", "$(rm -rf /)"], env={"HTTP_PROXY": "http://p:1"})
        assert shlex.split(line) == ["env", "HTTP_PROXY=http://p:1", "git", "fetch", "http://x/a b", "$(rm -rf /)"]

    @pytest.mark.parametrize("bad", ["A B", "-x", "X;Y", "a.b", ""])
    def test_refuses_bad_env_names(self, bad):
        with pytest.raises(ValueError):
            command_line(["true"], env={bad: "1"})


class TestKillOnClose:
    """The remote wrapper, run by the local /bin/sh exactly as sshd would run it."""

    def _start(self, tmp_path, script: str):
        import subprocess

        line = killable_command_line(["sh", "-c", script], env={"MARK": str(tmp_path)})
        return subprocess.Popen(
            ["sh", "-c", line], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )

    def test_exit_status_and_output_pass_through(self, tmp_path):
        proc = self._start(tmp_path, 'echo "out $MARK"; echo err >&2; exit 7')
        rc = proc.wait(timeout=10)  # stdin stays open: the command ends on its own
        assert (rc, proc.stdout.read().decode(), proc.stderr.read().decode()) == (7, f"out {tmp_path}\n", "err\n")
        proc.stdin.close()

    def test_closing_stdin_kills_the_whole_process_group(self, tmp_path):
        import os
        import time

        # a child of the command (as docker build is of the client) must die with it
        proc = self._start(tmp_path, 'sleep 60 & echo $! > "$MARK/child"; echo started; wait')
        assert proc.stdout.readline() == b"started\n"
        child = int((tmp_path / "child").read_text())
        proc.stdin.close()  # what sshd does when the channel or the connection goes away
        assert proc.wait(timeout=10) != 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(f"/proc/{child}"):
            time.sleep(0.05)
        assert not os.path.exists(f"/proc/{child}"), "the command's child survived the close"


class TestDeriveState:
    def test_all_layers_desired_is_in_sync(self):
        d = derive_state([Evidence("image label", A), Evidence("env", A), Evidence("health", A)], A)
        assert (d.state, d.commit) == ("in-sync", A)

    def test_one_old_commit_everywhere_is_drift(self):
        d = derive_state([Evidence("image label", B), Evidence("env", B), Evidence("health", B)], A)
        assert (d.state, d.commit) == ("drift", B)

    def test_layers_disagree_is_provenance_mismatch(self):
        d = derive_state([Evidence("image label", A), Evidence("env", A), Evidence("health", B)], A)
        assert d.state == "provenance-mismatch" and d.commit is None and "health" in d.message

    def test_silent_expected_layer_blocks_in_sync(self):
        d = derive_state(
            [Evidence("image label", A), Evidence("env", A), Evidence("health", None, note="unhealthy")], A
        )
        assert d.state == "provenance-mismatch" and d.commit == A

    def test_silent_optional_layer_is_fine(self):
        d = derive_state([Evidence("image label", A), Evidence("env", A), Evidence("health", None, expected=False)], A)
        assert d.state == "in-sync"

    def test_nothing_proven_is_drift_without_commit(self):
        d = derive_state([Evidence("image label", None), Evidence("env", None)], A)
        assert (d.state, d.commit) == ("drift", None)


def test_parse_env_and_health_commit():
    assert parse_env(["A=1", "B=x=y", "NOEQ", "A=2"]) == {"A": "2", "B": "x=y"}
    assert health_commit({"deploy": {"commit": A.upper()}}) == A
    assert health_commit({"deploy": {"commit": "abc"}}) is None
    assert health_commit("text") is None


def test_health_classification():
    assert classify(200, {"status": "ok"}) == "healthy"
    assert classify(200, {"status": "degraded"}) == "unhealthy"
    assert classify(502, {"error": "x"}) == "unhealthy"
    assert classify(204, "") == "healthy"


class TestK3s:
    DEP = {
        "metadata": {"generation": 2, "annotations": {"UNIDESK_DEPLOY_COMMIT": A, "other": "x"}},
        "spec": {
            "replicas": 1,
            "template": {
                "metadata": {"annotations": {"unidesk.ai/deploy-repo": REPO}},
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "img:1",
                            "env": [{"name": "UNIDESK_DEPLOY_COMMIT", "value": A}, {"name": "X", "value": "1"}],
                        }
                    ]
                },
            },
        },
        "status": {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }

    def test_facts(self):
        facts = deployment_facts(self.DEP)
        assert facts["annotations"] == {"UNIDESK_DEPLOY_COMMIT": A, "UNIDESK_DEPLOY_REPO": REPO}
        assert facts["env"] == {"UNIDESK_DEPLOY_COMMIT": A}
        assert facts["images"] == ["img:1"] and facts["rollout"]["complete"]

    def test_rollout_incomplete_when_generation_not_observed(self):
        dep = {**self.DEP, "status": {**self.DEP["status"], "observedGeneration": 1}}
        assert not rollout_status(dep)["complete"]


class TestProxy:
    def test_provider_uses_egress_and_build_args(self):
        scope = scope_for(target(), requires_proxy=False)
        assert scope.describe() == "provider-gateway-ws-egress:http://127.0.0.1:18789"
        assert scope.env()["HTTPS_PROXY"] == "http://127.0.0.1:18789"
        assert scope.build_args()[:2] == ["--build-arg", "HTTP_PROXY=http://127.0.0.1:18789"]

    def test_main_server_direct_unless_required(self):
        assert scope_for(target("main", None), requires_proxy=False).direct
        with pytest.raises(UnideskError) as exc:
            scope_for(target("main", None), requires_proxy=True)
        assert exc.value.problems[0].code == "proxy_probe_failed"

    def test_provider_without_proxy_never_falls_back(self):
        with pytest.raises(UnideskError):
            scope_for(target("provider", None), requires_proxy=False)

    def test_probe_refuses_option_like_repo(self):
        with pytest.raises(UnideskError):
            probe_argv("--upload-pack=evil")

    def test_credentials_redacted(self):
        assert "secret" not in ProxyScope("http://user:secret@127.0.0.1:1").describe()

    def test_probe_puts_the_repository_after_dashdash(self):
        argv = probe_argv(REPO)
        assert argv[-3:] == ["--", REPO, "HEAD"] and argv.index("--") > argv.index("ls-remote")

    @pytest.mark.parametrize(
        "repo",
        ["ssh://git@github.com/o/r.git", "git@github.com:o/r.git", "git://github.com/o/r.git", "file:///srv/r.git"],
    )
    def test_proxied_scope_refuses_repositories_the_proxy_cannot_carry(self, repo):
        with pytest.raises(UnideskError) as exc:
            check_repo_for_scope(repo, ProxyScope("http://127.0.0.1:18789"), "D518")
        assert exc.value.problems[0].code == "proxy_probe_failed" and "not http(s)" in exc.value.problems[0].message
        check_repo_for_scope(repo, ProxyScope(None), "main-server")  # direct: any scheme git can fetch

    @pytest.mark.parametrize("repo", [REPO, "https://github.com/o/r.git", "HTTPS://github.com/o/r.git"])
    def test_proxied_scope_allows_http_repositories(self, repo):
        check_repo_for_scope(repo, ProxyScope("http://127.0.0.1:18789"), "D518")


class FakeSession:
    """Records the remote commands source_step runs; every command succeeds."""

    def __init__(self, commit: str) -> None:
        self.commit = commit
        self.argvs: list[list[str]] = []

    async def run(self, argv, *, env=None, timeout=None, on_line=None, input=None):
        self.argvs.append(list(argv))
        out = self.commit + "\n" if "rev-parse" in argv and "--verify" in argv else ""
        rc = 1 if "cat-file" in argv else 0  # the commit is not in the mirror yet: fetch it by SHA too
        return RunResult(tuple(argv), rc, out, "")


class FakeContext:
    def __init__(self, tgt: Target, repo: str = REPO, shared: dict | None = None) -> None:
        self.service = dataclasses.replace(svc(), repo=repo)
        self.target, self.shared, self.lines = tgt, dict(shared or {}), []
        self.fake = FakeSession(A)
        self.sessions = 0

    def emit(self, text, stream="stdout"):
        self.lines.append(text)

    async def session(self):
        self.sessions += 1
        return self.fake


class TestSourceStep:
    async def test_a_provider_without_a_proxy_scope_never_fetches_directly(self):
        ctx = FakeContext(target())
        with pytest.raises(UnideskError) as exc:
            await source_step(ctx)
        assert exc.value.problems[0].code == "proxy_probe_failed" and ctx.sessions == 0

    async def test_a_proxied_ssh_repository_is_refused_before_any_command(self):
        ctx = FakeContext(
            target(), repo="ssh://git@github.com/o/r.git", shared={"proxy": ProxyScope("http://127.0.0.1:18789")}
        )
        with pytest.raises(UnideskError) as exc:
            await source_step(ctx)
        assert exc.value.problems[0].code == "proxy_probe_failed" and ctx.sessions == 0

    async def test_fetches_put_the_repository_after_dashdash_and_use_the_proxy(self):
        ctx = FakeContext(target(), shared={"proxy": ProxyScope("http://127.0.0.1:18789")})
        await source_step(ctx)
        fetches = [a for a in ctx.fake.argvs if "fetch" in a]
        assert len(fetches) == 2
        for argv in fetches:
            i = argv.index("--")
            assert argv.index("fetch") < i and argv[i + 1] == REPO
        assert fetches[0][-1] == "+refs/heads/*:refs/heads/*" and fetches[1][-1] == A
        assert "target_source_proxy=provider-gateway-ws-egress:http://127.0.0.1:18789" in ctx.lines

    async def test_the_main_server_without_a_scope_goes_direct(self):
        ctx = FakeContext(target("main", None))
        await source_step(ctx)
        assert "target_source_proxy=direct" in ctx.lines


class TestSourcePaths:
    def test_mirror_per_repo(self):
        a, b = mirror_path("/w", REPO), mirror_path("/w", REPO + "x")
        assert a.startswith("/w/mirrors/sample-") and a.endswith(".git") and a != b

    def test_context_paths_are_fresh_and_removable_only_under_contexts(self):
        c1, c2 = context_path("/w", "dev", "svc", A), context_path("/w", "dev", "svc", A)
        assert c1 != c2 and is_context_path("/w", c1)
        assert not is_context_path("/w", "/w/contexts/../etc")
        assert not is_context_path("/w", "/w/mirrors/x")
        assert not is_context_path("/w", "/w/contexts/")


class TestBuildPlan:
    def plan(self, **kw) -> BuildPlan:
        base = dict(
            image="img:main",
            context_dir="/c/.",
            dockerfile="/c/Dockerfile",
            labels={"unidesk.ai/source-commit": A},
            buildx=False,
            network_host=True,
            cache_from="img:main",
            base_arg=("BASE", "img:main-build-base"),
            proxy=ProxyScope("http://127.0.0.1:18789"),
        )
        base.update(kw)
        return BuildPlan(**base)

    def test_builtin_buildkit(self):
        argv = self.plan().argv()
        assert argv[:4] == ["docker", "build", "--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        assert ["--cache-from", "img:main"] == argv[4:6] and "--network" in argv
        assert "BASE=img:main-build-base" in argv and "HTTPS_PROXY=http://127.0.0.1:18789" in argv
        assert "unidesk.ai/source-commit=" + A in argv and argv[-2:] == ["--", "/c/."]
        assert self.plan().env() == {"DOCKER_BUILDKIT": "1"}

    def test_buildx_inline_cache_no_cache_from(self):
        argv = self.plan(buildx=True, cache_from=None, network_host=False, base_arg=None, proxy=ProxyScope(None)).argv()
        assert argv[:6] == ["docker", "buildx", "build", "--load", "--cache-to", "type=inline"]
        assert "--cache-from" not in argv and "--network" not in argv and not any("PROXY" in a for a in argv)
        assert self.plan(buildx=True).env() == {}

    def test_build_base_and_repo_file(self):
        assert build_base_image("x:main") == "x:main-build-base"
        assert repo_file("/c", "sub/Dockerfile") == "/c/sub/Dockerfile"
        assert repo_file("/c", ".") == "/c"
        with pytest.raises(UnideskError):
            repo_file("/c", "../etc/passwd")


class TestCompose:
    LABELS = {
        "com.docker.compose.project": "prov",
        "com.docker.compose.service": "web",
        "com.docker.compose.project.config_files": "/srv/a.yml,/srv/b.yml",
        "com.docker.compose.project.working_dir": "/srv",
    }

    @staticmethod
    def key(found) -> tuple:
        return found.project, found.service, found.files, found.workdir

    def test_catalog_project_wins_on_main(self):
        s = svc(project="unidesk", service="backend-core", file="/etc/unidesk/compose.yml")
        assert self.key(compose_identity(s, self.LABELS)) == (
            "unidesk",
            "backend-core",
            ("/etc/unidesk/compose.yml",),
            "/srv",
        )

    def test_provider_reads_labels(self):
        assert self.key(compose_identity(svc(), self.LABELS)) == ("prov", "web", ("/srv/a.yml", "/srv/b.yml"), "/srv")
        declared = svc(project="unidesk", service="backend-core", file="/etc/c.yml")
        found = compose_identity(declared, self.LABELS, provider=True)
        assert found.project == "prov" and any("compose.project unidesk is stale" in n for n in found.notes)
        fallback = compose_identity(declared, None, provider=True)
        assert fallback.project == "unidesk" and any("fallback" in n for n in fallback.notes)

    def test_relative_config_file_resolves_against_the_working_dir_and_our_override_is_dropped(self):
        labels = {
            **self.LABELS,
            "com.docker.compose.project.config_files": "docker-compose.yml,sub/../x.yml,/srv/unidesk-deploy.web.override.yml",
        }
        assert compose_identity(svc(), labels, provider=True).files == ("/srv/docker-compose.yml", "/srv/x.yml")

    def test_never_guessed(self):
        with pytest.raises(UnideskError) as exc:
            compose_identity(svc(), None)
        assert exc.value.problems[0].code == "rollout_failed"

    def test_deploy_env_override(self):
        assert override_path("/srv/app/docker-compose.yml", "web") == "/srv/app/unidesk-deploy.web.override.yml"
        assert is_override("/srv/app/unidesk-deploy.web.override.yml") and not is_override(
            "/srv/app/docker-compose.yml"
        )
        text = override_text("web", {"UNIDESK_DEPLOY_COMMIT": A, "UNIDESK_DEPLOY_REPO": "http://h/$x.git"}, "2.4")
        doc = yaml.safe_load(text)
        assert doc["version"] == "2.4"
        assert doc["services"]["web"]["environment"] == {
            "UNIDESK_DEPLOY_COMMIT": A,
            "UNIDESK_DEPLOY_REPO": "http://h/$$x.git",
        }
        assert "version" not in yaml.safe_load(override_text("web", {}, None))
        with pytest.raises(ValueError):
            override_path("/srv/c.yml", "-x")

    def test_build_from_compose_config_inside_the_repository(self):
        config = (
            "version: '2.4'\nservices:\n  web:\n    image: x:1\n    build:\n      context: /src/repo/svc\n      "
            "dockerfile: docker/Dockerfile\n      target: prod\n"
        )
        assert config_version(config) == "2.4"
        declared = build_from_config(config, "web")
        assert declared == BuildDeclaration("/src/repo/svc", "docker/Dockerfile", "prod")
        assert repository_build(declared, "/src/repo") == BuildSource(
            "svc", "svc/docker/Dockerfile", "prod", "docker compose config"
        )
        assert repository_build(declared, "/elsewhere") is None and repository_build(declared, "") is None
        assert build_from_config("services:\n  web:\n    build: /src/repo\n", "web") == BuildDeclaration(
            "/src/repo", "Dockerfile", None
        )
        assert build_from_config("services:\n  web:\n    image: x\n", "web") is None

    def test_argv(self):
        t = ComposeTarget(("docker-compose",), "p", "s", ("/f.yml",), "/w", "img")
        assert t.up_argv() == [
            "docker-compose",
            "-p",
            "p",
            "--project-directory",
            "/w",
            "-f",
            "/f.yml",
            "up",
            "-d",
            "--no-build",
            "--no-deps",
            "--force-recreate",
            "s",
        ]

    def test_image_from_config(self):
        assert image_from_config("services:\n  web:\n    image: x:1\n", "web") == "x:1"
        assert image_from_config("services:\n  web: {}\n", "web") is None
        assert image_from_config(":\n- [", "web") is None


class TestCheckDocker:
    def facts(self, label=A, env_commit=A) -> ContainerFacts:
        return ContainerFacts(
            "id",
            "c",
            True,
            "running",
            "img",
            "sha256:x",
            {},
            {
                "unidesk.ai/source-commit": label,
                "unidesk.ai/service-id": "backend-core",
                "unidesk.ai/source-repo": REPO,
            },
            {
                "UNIDESK_DEPLOY_COMMIT": env_commit,
                "UNIDESK_DEPLOY_SERVICE_ID": "backend-core",
                "UNIDESK_DEPLOY_REPO": REPO,
                "UNIDESK_DEPLOY_REQUESTED_COMMIT": A[:12],
            },
        )

    def test_all_layers_prove_commit(self):
        assert check_docker(svc(), self.facts(), HealthReading("healthy", "u", 200, {}, A), True).ok

    def test_identity_layer_requires_the_built_image(self):
        good = HealthReading("healthy", "u", 200, {}, A)
        v = check_docker(svc(), self.facts(), good, True, built="sha256:x")
        assert v.ok and "identity" in v.message
        v = check_docker(svc(), self.facts(), good, True, built="sha256:y")
        assert (
            not v.ok
            and v.settled
            and [(c.layer, c.expected, c.actual) for c in v.failed] == [("identity", "sha256:y", "sha256:x")]
        )

    def test_healthy_old_version_fails(self):
        v = check_docker(svc(), self.facts(B, B), HealthReading("healthy", "u", 200, {}, B), True)
        assert not v.ok and "expected " + A in v.message
        failed = {(c.layer, c.what): (c.expected, c.actual) for c in v.failed}
        assert failed == {
            ("image", "unidesk.ai/source-commit"): (A, B),
            ("env", "UNIDESK_DEPLOY_COMMIT"): (A, B),
            ("health", "deploy.commit"): (A, B),
        }

    def test_health_must_report_when_exposed(self):
        assert not check_docker(svc(), self.facts(), HealthReading("unhealthy", "u", 502), True).ok

    def test_unhealthy_never_verifies(self):
        """Even where health does not expose deploy.commit, an unhealthy service (502, or 500
        {"status": "down"} with the right commit) fails verification."""
        for commit_exposed in (False, True):
            v = check_docker(svc(), self.facts(), HealthReading("unhealthy", "u", 502), commit_exposed)
            assert not v.ok and (Layer.HEALTH, "status", "unhealthy (HTTP 502)") in [
                (c.layer, c.what, c.actual) for c in v.failed
            ]
        down = HealthReading("unhealthy", "u", 500, {"status": "down", "deploy": {"commit": A}}, A)
        assert not check_docker(svc(), self.facts(), down, True).ok
        assert not check_docker(
            svc(), self.facts(), HealthReading("unknown", None, error="no microserviceProxy configured"), False
        ).ok
        assert check_docker(svc(), self.facts(), HealthReading("healthy", "u", 200, {}), False).ok


def test_settled_failures_do_not_wait():
    """Labels and env are fixed when a container is created: a wrong one settles verification;
    health (or a container not running yet) may still change."""
    t = TestCheckDocker()
    assert check_docker(svc(), t.facts(B, B), HealthReading("healthy", "u", 200, {}, B), True).settled
    assert not check_docker(svc(), t.facts(), HealthReading("healthy", "u", 200, {}, B), True).settled
    assert not check_docker(svc(), None, HealthReading("healthy", "u", 200, {}, A), True).settled


class TestK8sManifest:
    TEXT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: dc, namespace: unidesk, annotations: {UNIDESK_DEPLOY_COMMIT: __DEPLOY_COMMIT__}}
spec:
  template:
    spec:
      containers:
        - {name: c, image: __IMAGE__, env: [{name: PORT, value: "1"}, {name: UNIDESK_DEPLOY_COMMIT, value: __DEPLOY_COMMIT__}]}
---
apiVersion: v1
kind: Service
metadata: {name: dc, namespace: unidesk}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: other, namespace: unidesk}
"""

    def objects(self, **kw):
        from unidesk_tui.catalog import K8sObjects

        return K8sObjects.model_validate(
            {"manifest": "k.yaml", "namespace": "unidesk", "deployments": ["dc"], "services": ["dc"], **kw}
        )

    def env(self):
        from executors.stamp import deploy_env

        return deploy_env("decision-center", REPO, A, A[:10])

    def test_narrowed_filled_and_stamped(self):
        from executors.k8s_manifest import RESTARTED_AT, render

        out = render(self.TEXT, self.objects(), "decision-center", "img:d601", self.env())
        assert [(o["kind"], o["metadata"]["name"]) for o in out] == [("Deployment", "dc"), ("Service", "dc")]
        dep = out[0]
        assert dep["metadata"]["annotations"]["UNIDESK_DEPLOY_COMMIT"] == A
        assert dep["spec"]["template"]["metadata"]["annotations"]["UNIDESK_DEPLOY_REQUESTED_COMMIT"] == A[:10]
        container = dep["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "img:d601"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["PORT"] == "1" and env["UNIDESK_DEPLOY_COMMIT"] == A and len(container["env"]) == 5
        assert RESTARTED_AT not in dep["spec"]["template"]["metadata"]["annotations"]
        forced = render(self.TEXT, self.objects(), "decision-center", "img:d601", self.env(), restart=True)
        assert RESTARTED_AT in forced[0]["spec"]["template"]["metadata"]["annotations"]

    def test_other_namespace_refused(self):
        from executors.k8s_manifest import render

        with pytest.raises(UnideskError) as exc:
            render(
                self.TEXT.replace("namespace: unidesk}", "namespace: kube-system}", 1),
                self.objects(),
                "x",
                "i",
                self.env(),
            )
        assert "only 'unidesk'" in exc.value.problems[0].message

    def test_missing_object_refused(self):
        from executors.k8s_manifest import render

        with pytest.raises(UnideskError):
            render(self.TEXT, self.objects(services=["nope"]), "x", "i", self.env())


def test_containerized_k3s_detected():
    from executors.k3s_apply import containerized_k3s

    assert containerized_k3s(["abc k3s-server rancher/k3s:v1.30.0-k3s1", "def web nginx:1"]) == [
        ("abc", "k3s-server (rancher/k3s:v1.30.0-k3s1)")
    ]
    assert containerized_k3s(["abc web unidesk-k3sctl-adapter:main"]) == []


def test_check_k3s_layers():
    from executors.k3s_apply import check_k3s

    stamp = {"UNIDESK_DEPLOY_COMMIT": A, "UNIDESK_DEPLOY_REQUESTED_COMMIT": A[:12]}
    dep = {
        "metadata": {"generation": 1, "annotations": stamp},
        "spec": {
            "replicas": 1,
            "template": {
                "spec": {
                    "containers": [
                        {"name": "c", "image": "i", "env": [{"name": k, "value": v} for k, v in stamp.items()]}
                    ]
                }
            },
        },
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1},
    }
    v = check_k3s(svc(), {"dc": dep}, HealthReading("healthy", "u", 200, {}, A), True, "docker.io/library/i")
    assert v.ok and not v.settled
    v = check_k3s(svc(), {"dc": dep}, HealthReading("healthy", "u", 200, {}, B), True, "i")
    assert not v.ok and not v.settled and [(c.layer, c.what) for c in v.failed] == [("health", "deploy.commit")]
    old = {**dep, "metadata": {**dep["metadata"], "annotations": {**stamp, "UNIDESK_DEPLOY_COMMIT": B}}}
    v = check_k3s(svc(), {"dc": old}, HealthReading("healthy", "u", 200, {}, B), True, "i")
    assert (
        not v.ok
        and v.settled
        and ("annotation", "dc UNIDESK_DEPLOY_COMMIT", A, B)
        in [(c.layer, c.what, c.expected, c.actual) for c in v.failed]
    )
    # health is read and must be healthy even where deploy.commit is not exposed
    v = check_k3s(svc(), {"dc": dep}, HealthReading("unhealthy", "u", 500, {"status": "down"}), False, "i")
    assert (
        not v.ok and not v.settled and [(c.layer, c.actual) for c in v.failed] == [("health", "unhealthy (HTTP 500)")]
    )
    # our own stamps are not enough: the Deployment must run the imported image
    v = check_k3s(svc(), {"dc": dep}, HealthReading("healthy", "u", 200, {}, A), True, "i:new")
    assert not v.ok and v.settled and [(c.layer, c.expected, c.actual) for c in v.failed] == [("image", "i:new", "i")]
    # an absent Deployment settles it too
    v = check_k3s(svc(), {"dc": None}, HealthReading("healthy", "u", 200, {}, A), True, "i")
    assert not v.ok and v.settled
    # identity: containerd must hold the very image built for the commit under that name
    good = HealthReading("healthy", "u", 200, {}, A)
    v = check_k3s(svc(), {"dc": dep}, good, True, "i", built="sha256:" + "a" * 64, running_id="sha256:" + "a" * 64)
    assert v.ok and "identity" in v.message
    v = check_k3s(svc(), {"dc": dep}, good, True, "i", built="sha256:" + "a" * 64, running_id="sha256:" + "b" * 64)
    assert not v.ok and v.settled and [(c.layer, c.actual) for c in v.failed] == [("identity", "sha256:" + "b" * 64)]
    v = check_k3s(svc(), {"dc": dep}, good, True, "i", containerized=("k3s-server (rancher/k3s:v1)",))
    assert not v.ok and [(c.layer, c.what) for c in v.failed] == [("runtime", "containerized k3s")]


def loopback_pool(target_id: str, port: int, known_hosts: Path, connect_timeout: float):
    """A TargetPool over one provider target at 127.0.0.1:`port` with the given known_hosts file."""
    from unidesk_tui.catalog import Catalog
    from unidesk_tui.targets import TargetPool

    ssh = {"host": "127.0.0.1", "port": port, "knownHosts": str(known_hosts)}
    catalog = Catalog.model_validate(
        {"targets": [{"id": target_id, "role": "provider", "ssh": ssh}], "microservices": []}
    )
    return TargetPool(catalog, connect_timeout=connect_timeout)


async def test_silent_host_is_unreachable_within_the_connect_timeout(tmp_path):
    """A host that accepts TCP but never speaks SSH must not stall the pool."""
    import asyncio

    held = []

    async def silent(reader, writer):
        held.append(writer)  # keep the connection open, say nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text("")
    pool = loopback_pool("silent", port, known, 0.5)
    try:
        with pytest.raises(UnideskError) as exc:
            await pool.session("silent")
        assert exc.value.problems[0].code == "target_unreachable"
        # The pool's own connect timeout ended it (not the server, not a guard around the test).
        assert "silent" in exc.value.problems[0].message and "no answer within 0.5 s" in exc.value.problems[0].message
    finally:
        await pool.close()
        for w in held:
            w.close()
        server.close()


async def test_unknown_host_key_is_refused(tmp_path):
    """Host keys are always verified: a server whose key is not in known_hosts is never talked to."""
    import asyncssh

    server_key = asyncssh.generate_private_key("ssh-ed25519")
    other_key = asyncssh.generate_private_key("ssh-ed25519")
    server = await asyncssh.create_server(asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[server_key])
    port = server.sockets[0].getsockname()[1]
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {other_key.export_public_key().decode().strip()}\n")
    pool = loopback_pool("impostor", port, known, 5)
    try:
        with pytest.raises(UnideskError) as exc:
            await pool.session("impostor")
        assert (
            exc.value.problems[0].code == "target_unreachable" and "host key" in exc.value.problems[0].message.lower()
        )
    finally:
        await pool.close()
        server.close()


async def test_missing_known_hosts_is_refused_without_connecting(tmp_path):
    """No known_hosts file, no connection: host keys are never left unverified."""
    import asyncio

    accepted = []

    async def count(reader, writer):
        accepted.append(writer)
        writer.close()

    server = await asyncio.start_server(count, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    missing = tmp_path / "no" / "known_hosts"
    pool = loopback_pool("nokeys", port, missing, 5)
    try:
        with pytest.raises(UnideskError) as exc:
            await pool.session("nokeys")
        problem = exc.value.problems[0]
        assert (
            problem.code == "target_unreachable"
            and str(missing) in problem.message
            and "known_hosts" in problem.message
        )
        assert accepted == []
    finally:
        await pool.close()
        server.close()


def test_known_hosts_defaults_to_the_users_file():
    from unidesk_tui.targets import known_hosts_path

    assert known_hosts_path(target()).endswith("/.ssh/known_hosts") and not known_hosts_path(target()).startswith("~")
    explicit = Target.model_validate(
        {"id": "D518", "role": "provider", "ssh": {"host": "10.0.0.4", "knownHosts": "/etc/kh"}}
    )
    assert known_hosts_path(explicit) == "/etc/kh"


class TestNodeKubeconfig:
    def kubeconfig(self, **user) -> dict:
        return {
            "apiVersion": "v1",
            "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443"}}],
            "users": [{"name": "default", "user": user}],
            "contexts": [{"name": "c", "context": {"cluster": "c", "user": "default"}}],
            "current-context": "c",
        }

    def test_inline_credentials_pass(self):
        from unidesk_tui.targets import check_node_kubeconfig

        check_node_kubeconfig(self.kubeconfig(**{"client-certificate-data": "eA==", "client-key-data": "eA=="}), "D601")
        check_node_kubeconfig({"apiVersion": "v1", "clusters": [], "users": None}, "D601")

    @pytest.mark.parametrize(
        "user",
        [
            {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "/bin/sh", "args": ["-c", "id"]}},
            {"auth-provider": {"name": "gcp", "config": {"cmd-path": "/bin/sh"}}},
            {"tokenFile": "/root/.ssh/id_ed25519"},
        ],
    )
    def test_exec_auth_provider_and_token_file_are_refused(self, user):
        from unidesk_tui.targets import check_node_kubeconfig

        with pytest.raises(UnideskError) as exc:
            check_node_kubeconfig(self.kubeconfig(**user), "D601")
        assert exc.value.problems[0].code == "probe_failed" and next(iter(user)) in exc.value.problems[0].message

    @pytest.mark.parametrize("doc", ["text", [], {"users": "x"}, {"users": ["x"]}])
    def test_malformed_is_refused(self, doc):
        from unidesk_tui.targets import check_node_kubeconfig

        with pytest.raises(UnideskError):
            check_node_kubeconfig(doc, "D601")
