"""Sample content of the lab: the `sample-service` repository and the UniDesk workspace `unidesk`.

sample-service (on the lab remote, working clone at `<dir>/sample-service`): five commits on
master with fixed dates, so SHAs are stable on a machine; the fifth commit's date is chosen so its
short SHA shares its first 4 hex digits with an earlier commit (an ambiguous 4-digit prefix).

unidesk (working clone at `<dir>/workspace`, origin = the lab remote): config.json naming the
lab's hosts and paths, deploy.json, and the environment branches deploy/dev and deploy/prod holding
only deploy.json. Compose files of the compose services are written under each host's root.

Commits: `old` (3rd) is what `lab up --seed` runs; `new` (5th, master) is what deploy.json and
deploy/dev name; deploy/prod names the 4th. `<dir>/content.json` records all of it.

The 2nd commit adds the k3s manifests: production's (`k3s/sample.k8s.yaml`) and the spec-shaped dev
ones beside them (`k3s/dev/unidesk-dev-{foundation,core,code-queue}.k8s.yaml`). config.json gives
backend-core, frontend and code-queue a dev override (k3s on D601 in unidesk-dev, their own `:dev`
image, whose build may start from the production build base) and the dev environment its own
microservice proxy.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from string import Template

from unidesk_lab import gitserver, registry
from unidesk_lab.layout import CONTAINERD_NAMESPACE, HOSTS, K3S_HOST, MAIN, PROVIDERS, SSH_USER, Layout

ASSETS = Path(__file__).parent / "assets"
BUSYBOX = Path("/bin/busybox")
SAMPLE_REPO = "sample-service"
WORKSPACE_REPO = "unidesk"
CONTENT_VERSION = 7
HEALTH_PATH = "/cgi-bin/health"  # busybox httpd runs CGI only under /cgi-bin/
_AUTHOR = "UniDesk Lab <lab@unidesk.invalid>"
_BASE_TS = 1767600000  # 2026-01-05T08:00:00Z; commit i is dated a day after commit i-1

# id, mode, target, health port, image, compose service (None for k3s)
SERVICES: tuple[dict, ...] = (
    {
        "id": "backend-core",
        "mode": "unidesk-direct",
        "target": MAIN,
        "port": 18080,
        "image": "unidesk-backend-core:main",
        "compose": True,
    },
    {
        "id": "frontend",
        "mode": "unidesk-direct",
        "target": MAIN,
        "port": 18085,
        "image": "unidesk-frontend:main",
        "compose": True,
    },
    {
        "id": "code-queue-mgr",
        "mode": "internal-sidecar",
        "target": MAIN,
        "port": 18081,
        "image": "unidesk-code-queue-mgr:main",
        "compose": True,
    },
    {
        "id": "d518-worker",
        "mode": "unidesk-direct",
        "target": "D518",
        "port": 18082,
        "image": "unidesk-d518-worker:d518",
        "compose": True,
    },
    {
        "id": "decision-center",
        "mode": "k3sctl-managed",
        "target": K3S_HOST,
        "port": 18083,
        "image": "unidesk-decision-center:d601",
        "compose": False,
    },
    {
        "id": "code-queue",
        "mode": "k3sctl-managed",
        "target": K3S_HOST,
        "port": 4222,
        "image": "unidesk-code-queue:d601",
        "compose": False,
    },
)
IMAGE_ONLY = {"id": "node-exporter", "image": "docker.io/prom/node-exporter:v1.8.0", "target": "D518"}
COMPOSE_PROJECT = "unidesk"
DEV_APPLY_ENABLED = ("backend-core", "frontend", "code-queue")  # the spec's isolated D601 dev slice
DEV_NAMESPACE = "unidesk-dev"
DEV_MANIFESTS = {name: f"k3s/dev/unidesk-dev-{name}.k8s.yaml" for name in ("foundation", "core", "code-queue")}
CODE_QUEUE_DEV = (
    "code-queue-scheduler-dev",
    "code-queue-read-dev",
    "code-queue-write-dev",
    "d601-dev-provider-egress-proxy",
)
# environments.dev.k8s per service: (manifest, objects); each object is a Deployment and a Service
DEV_OBJECTS = {
    "backend-core": (DEV_MANIFESTS["core"], ("backend-core-dev",)),
    "frontend": (DEV_MANIFESTS["core"], ("frontend-dev",)),
    "code-queue": (DEV_MANIFESTS["code-queue"], CODE_QUEUE_DEV),
}


def _git(cwd: Path, *args: str, input: bytes | None = None) -> str:
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_TERMINAL_PROMPT": "0"}
    proc = subprocess.run(["git", "-C", str(cwd), *args], input=input, capture_output=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} in {cwd}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode().strip()


def _commit_body(tree: str, parent: str | None, message: str, ts: int) -> bytes:
    lines = [f"tree {tree}"] + ([f"parent {parent}"] if parent else [])
    lines += [f"author {_AUTHOR} {ts} +0000", f"committer {_AUTHOR} {ts} +0000", "", message, ""]
    return "\n".join(lines).encode()


def _sha(body: bytes) -> str:
    return hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()


def _commit(repo: Path, tree: str, parent: str | None, message: str, ts: int, twin_of: list[str] | None = None) -> str:
    """Write a commit object; with `twin_of`, move its date forward until its SHA shares a 4-hex prefix."""
    body = _commit_body(tree, parent, message, ts)
    if twin_of:
        prefixes = {c[:4] for c in twin_of}
        while _sha(body)[:4] not in prefixes:
            ts += 1
            body = _commit_body(tree, parent, message, ts)
    sha = _git(repo, "hash-object", "-t", "commit", "-w", "--stdin", input=body)
    assert sha == _sha(body), "commit object hash mismatch"
    return sha


def _clone_with_origin(path: Path, url: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    _git(path, "init", "-q", "-b", "master")
    _git(path, "config", "user.name", "UniDesk Lab")
    _git(path, "config", "user.email", "lab@unidesk.invalid")
    _git(path, "remote", "add", "origin", url)


def _publish(path: Path, bare: Path, refs: list[str]) -> None:
    """Push to the bare repo by path (the HTTP server may not run yet), then mirror origin/* refs."""
    _git(path, "push", "-q", "--force", str(bare), *[f"{r}:{r}" for r in refs])
    _git(path, "fetch", "-q", str(bare), "+refs/heads/*:refs/remotes/origin/*")
    _git(path, "config", "branch.master.remote", "origin")
    _git(path, "config", "branch.master.merge", "refs/heads/master")


def _sample_files(root: Path, step: int) -> None:
    """The working tree of sample-service at commit `step` (1-based)."""
    src = ASSETS / "sample-service"
    if step == 1:
        for rel in ("Dockerfile", "README.md", "app/entrypoint.sh", "app/www/index.html", "app/www/cgi-bin/health"):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, root / rel)
        for rel in ("app/entrypoint.sh", "app/www/cgi-bin/health"):
            (root / rel).chmod(0o755)
        shutil.copyfile(BUSYBOX, root / "busybox")
        (root / "busybox").chmod(0o755)
    if step == 2:
        for rel in ("k3s/sample.k8s.yaml", *DEV_MANIFESTS.values()):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, root / rel)
    (root / "app" / "VERSION").write_text(f"0.{step}.0\n")


_SAMPLE_MESSAGES = (
    "sample-service: busybox httpd with a CGI health endpoint",
    "Add the k3s manifests of the k3s-managed services",
    "Release 0.3.0",
    "Release 0.4.0",
    "Release 0.5.0",
)


def _require_static(path: Path) -> None:
    """The image is FROM scratch: busybox must be the static build (Debian busybox-static)."""
    import struct

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RuntimeError(f"{path} is missing: install the Debian package busybox-static") from None
    if data[:5] != b"\x7fELF\x02":
        raise RuntimeError(f"{path} is not a 64-bit ELF binary")
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        if struct.unpack_from("<I", data, phoff + i * phentsize)[0] == 3:  # PT_INTERP: dynamically linked
            raise RuntimeError(f"{path} is dynamically linked: install busybox-static (not busybox)")


def build_sample_repo(lay: Layout) -> list[str]:
    """Create sample-service with five commits; returns their full SHAs, oldest first."""
    _require_static(BUSYBOX)
    bare = gitserver.init_bare(lay.git_root, SAMPLE_REPO)
    work = lay.sample_checkout
    _clone_with_origin(work, lay.repo_url(SAMPLE_REPO))
    commits: list[str] = []
    for step, message in enumerate(_SAMPLE_MESSAGES, start=1):
        _sample_files(work, step)
        _git(work, "add", "-A")
        tree = _git(work, "write-tree")
        twin = commits[:] if step == len(_SAMPLE_MESSAGES) else None
        sha = _commit(work, tree, commits[-1] if commits else None, message, _BASE_TS + 86400 * step, twin_of=twin)
        _git(work, "update-ref", "refs/heads/master", sha)
        commits.append(sha)
    _publish(work, bare, ["refs/heads/master"])
    return commits


def compose_services(host: str) -> list[dict]:
    return [s for s in SERVICES if s["compose"] and s["target"] == host]


def write_compose_files(lay: Layout) -> None:
    header = (ASSETS / "compose" / "header.yml").read_text()
    block = Template((ASSETS / "compose" / "service.yml").read_text())
    for host in HOSTS:
        services = compose_services(host)
        if not services:
            continue
        path = lay.compose_file(host)
        path.parent.mkdir(parents=True, exist_ok=True)
        body = "".join(
            block.substitute(service=s["id"], image=s["image"], port=s["port"], service_id=s["id"]) for s in services
        )
        path.write_text(header + body)


def config(lay: Layout, old: str) -> dict:
    """The lab workspace's config.json (CONFIG.md shape, every host path pointing into the lab)."""
    targets = []
    for host in HOSTS:
        t: dict = {
            "id": host,
            "role": "main" if host == MAIN else "provider",
            "ssh": {
                "host": lay.address(host),
                "port": 22,
                "user": SSH_USER,
                "identityFile": str(lay.identity_file),
                "knownHosts": str(lay.known_hosts),
            },
            "providerId": host if host in PROVIDERS else None,
            "egressProxy": lay.egress_url if host in PROVIDERS else None,
            "docker": {"socket": str(lay.docker_socket(host))},
            "workDir": str(lay.work_dir(host)),
        }
        if host == K3S_HOST:
            t["k3s"] = {
                "kubeconfig": str(lay.kubeconfig),
                "containerdSocket": str(lay.containerd_socket),
                "containerdNamespace": CONTAINERD_NAMESPACE,
                # the sandbox image comes from the lab registry, through D601's egress proxy
                "pauseImage": registry.pause_ref(lay),
                "registryPlainHttp": True,
            }
        targets.append(t)
    url = lay.repo_url(SAMPLE_REPO)
    services = []
    for s in SERVICES:
        m: dict = {
            "id": s["id"],
            "repository": {"url": url, "commitId": old},
            "deployment": {"mode": s["mode"], "target": s["target"]},
            "build": {
                "dockerfile": "Dockerfile",
                "context": ".",
                "image": s["image"],
                "baseImageArg": "SAMPLE_BASE_IMAGE",
                "requiresProxy": False,
            },
            "health": {"path": HEALTH_PATH, "port": s["port"], "exposesDeployCommit": True},
        }
        if s["compose"]:
            m["compose"] = {"project": COMPOSE_PROJECT, "service": s["id"], "file": str(lay.compose_file(s["target"]))}
        else:
            m["k8s"] = {
                "manifest": "k3s/sample.k8s.yaml",
                "namespace": "unidesk",
                "deployments": [s["id"]],
                "services": [s["id"]],
            }
            if s["id"] == "code-queue":  # decision-center is k3s-only: it never has a Compose service
                # the legacy direct-Docker twin a file-mode k3s rollout removes (only this project/service)
                m["compose"] = {"project": COMPOSE_PROJECT, "service": f"{s['id']}-backend"}
        if s["id"] in DEV_OBJECTS:
            manifest, objects = DEV_OBJECTS[s["id"]]
            m["environments"] = {
                "dev": {
                    "deployment": {"mode": "k3sctl-managed", "target": K3S_HOST},
                    "k8s": {
                        "manifest": manifest,
                        "namespace": DEV_NAMESPACE,
                        "deployments": list(objects),
                        "services": list(objects),
                    },
                    "build": {"image": s["image"].rsplit(":", 1)[0] + ":dev"},
                }
            }
        services.append(m)
    services.append(
        {
            "id": IMAGE_ONLY["id"],
            "image": IMAGE_ONLY["image"],
            "deployment": {"mode": "unidesk-direct", "target": IMAGE_ONLY["target"]},
        }
    )
    return {
        "schemaVersion": 1,
        "targets": targets,
        "microserviceProxy": {"url": lay.msproxy_url},
        "environments": {
            "dev": {
                "namespace": "unidesk-dev",
                "providerId": "D601-dev",
                "target": K3S_HOST,
                "database": {"host": "postgres-dev.unidesk-dev.svc.cluster.local", "port": 5432, "name": "unidesk_dev"},
                "applyEnabled": list(DEV_APPLY_ENABLED),
                "microserviceProxy": {"url": lay.dev_msproxy_url},
            },
            "prod": {
                "namespace": "unidesk",
                "providerId": K3S_HOST,
                "target": K3S_HOST,
                "database": {"host": "postgres.unidesk.svc.cluster.local", "port": 5432, "name": "unidesk"},
                "applyEnabled": [],
                "microserviceProxy": {"url": lay.msproxy_url},
            },
        },
        "microservices": services,
    }


def manifest(lay: Layout, commit: str, environment: str | None, short_for: tuple[str, ...] = ()) -> dict:
    """deploy.json naming `commit` for every service (a 10-hex short SHA for ids in `short_for`)."""
    url = lay.repo_url(SAMPLE_REPO)
    ids = [s["id"] for s in SERVICES] + [IMAGE_ONLY["id"]]
    doc: dict = {"schemaVersion": 1}
    if environment:
        doc["environment"] = environment
    doc["services"] = [{"id": i, "repo": url, "commitId": commit[:10] if i in short_for else commit} for i in ids]
    return doc


def _dump(doc: dict) -> str:
    return json.dumps(doc, indent=2) + "\n"


def build_workspace(lay: Layout, commits: list[str]) -> dict:
    old, prod, new = commits[2], commits[3], commits[4]
    bare = gitserver.init_bare(lay.git_root, WORKSPACE_REPO)
    work = lay.workspace
    _clone_with_origin(work, lay.repo_url(WORKSPACE_REPO))
    (work / "config.json").write_text(_dump(config(lay, old)))
    (work / "deploy.json").write_text(_dump(manifest(lay, new, None, short_for=("code-queue-mgr",))))
    (work / ".gitignore").write_text(".state/\n")
    (work / "README.md").write_text(
        "# UniDesk workspace (lab)\n\n`config.json` is the catalog of the lab's hosts and services; `deploy.json` "
        "says which\n"
        "commit each service should run. Environment manifests live on `deploy/dev` and `deploy/prod`.\n"
    )
    _git(work, "add", "-A")
    tree = _git(work, "write-tree")
    master = _commit(work, tree, None, "UniDesk workspace: lab catalog and desired state", _BASE_TS + 86400 * 6)
    _git(work, "update-ref", "refs/heads/master", master)
    refs = ["refs/heads/master"]
    for env, commit in (("dev", new), ("prod", prod)):
        blob = _git(work, "hash-object", "-w", "--stdin", input=_dump(manifest(lay, commit, env)).encode())
        env_tree = _git(work, "mktree", input=f"100644 blob {blob}\tdeploy.json\n".encode())
        sha = _commit(work, env_tree, None, f"deploy/{env}: desired state", _BASE_TS + 86400 * 7)
        _git(work, "update-ref", f"refs/heads/deploy/{env}", sha)
        refs.append(f"refs/heads/deploy/{env}")
    _publish(work, bare, refs)
    return {"master": master}


def content(lay: Layout) -> dict | None:
    """What `ensure` created (content.json), or None."""
    try:
        return json.loads((lay.dir / "content.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def ensure(lay: Layout) -> dict:
    """Create the sample content unless it exists for this lab slot (addresses are slot-specific)."""
    have = content(lay)
    write_compose_files(lay)
    if (
        have
        and have.get("slot") == lay.slot
        and have.get("version") == CONTENT_VERSION
        and (lay.workspace / "config.json").exists()
    ):
        return have
    for path in (lay.git_root, lay.workspace, lay.sample_checkout):
        shutil.rmtree(path, ignore_errors=True)
    commits = build_sample_repo(lay)
    twins = [c for c in commits if c[:4] == commits[-1][:4]]
    ws = build_workspace(lay, commits)
    doc = {
        "version": CONTENT_VERSION,
        "slot": lay.slot,
        "sampleRepo": lay.repo_url(SAMPLE_REPO),
        "workspaceRepo": lay.repo_url(WORKSPACE_REPO),
        "commits": commits,
        "old": commits[2],
        "prod": commits[3],
        "new": commits[4],
        "ambiguousPrefix": commits[-1][:4],
        "ambiguousCommits": twins,
        "workspaceMaster": ws["master"],
        "services": {
            s["id"]: {"target": s["target"], "mode": s["mode"], "port": s["port"], "image": s["image"]}
            for s in SERVICES
        },
    }
    tmp = lay.dir / "content.json.tmp"
    tmp.write_text(_dump(doc))
    os.replace(tmp, lay.dir / "content.json")
    return doc
