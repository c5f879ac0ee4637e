"""The lab's pod network and workloads on D601 (session lab): real containerd, runc, CNI bridge and
iptables inside D601; only the Kubernetes API is emulated.

- pods run in their own network namespaces, so a prod and a dev copy use the same container port;
- a Service has a stable address and `<svc>.<ns>.svc.cluster.local`, reachable from pods (also a pod
  calling its own Service) and from the main server;
- a Job runs to completion and reports `succeeded` or `failed`.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from helpers_live import ssh  # noqa: E402

pytestmark = pytest.mark.lab

D601, MAIN = "D601", "main-server"
IMAGE = "rancher/mirrored-library-busybox:1.36.1"  # the lab's busybox image, seeded into D601's containerd
WAIT = 60.0  # hang guard for polling, not a timing assertion


def kubectl(lab, *args: str, input: str | None = None, check: bool = True):
    proc = ssh(
        lab,
        D601,
        ["kubectl", "--kubeconfig", str(lab["kubeconfig"]), *args],
        check=check,
        input=input.encode() if input else None,
    )
    return proc.stdout.decode()


def get(lab, ns: str, what: str) -> dict:
    return json.loads(kubectl(lab, "-n", ns, "get", what, "-o", "json"))


def wait_for(fn, what: str):
    deadline = time.monotonic() + WAIT
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.3)


def in_pod(lab, ns: str, deployment: str, script: str) -> str:
    """Run `sh -c script` inside the (only) container of a workload, with ctr on D601."""
    sock = str(lab["containerdSocket"])
    ids = ssh(lab, D601, ["ctr", "-a", sock, "-n", "k8s.io", "containers", "ls", "-q"]).stdout.decode().split()
    cid = next(c for c in ids if c.startswith(f"kubeapi_{ns}_{deployment}_"))
    return ssh(
        lab,
        D601,
        [
            "ctr",
            "-a",
            sock,
            "-n",
            "k8s.io",
            "tasks",
            "exec",
            "--exec-id",
            f"t{uuid.uuid4().hex[:8]}",
            cid,
            "sh",
            "-c",
            script,
        ],
    ).stdout.decode()


def web(name: str, ns: str, page: str) -> str:
    """A Deployment serving `page` on 8080 (the same container port in every copy) and its Service."""
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": IMAGE,
                            "command": [
                                "/bin/sh",
                                "-c",
                                f"mkdir -p /www && echo {page} > /www/index.html && exec httpd -f -p 8080 -h /www",
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                            "resources": {"limits": {"cpu": "100m", "memory": "32Mi"}},
                        }
                    ]
                },
            },
        },
    }
    svc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    return yaml.safe_dump_all([dep, svc])


@pytest.fixture
def twins(lab):
    """The same workload in unidesk and unidesk-dev, both on container port 8080."""
    name = f"twin-{uuid.uuid4().hex[:6]}"
    for ns, page in (("unidesk", "prod-copy"), ("unidesk-dev", "dev-copy")):
        kubectl(lab, "apply", "--validate=false", "-f", "-", input=web(name, ns, page))
    yield name
    for ns in ("unidesk", "unidesk-dev"):
        kubectl(lab, "-n", ns, "delete", "deployment,service", name, check=False)


def test_prod_and_dev_copies_share_a_container_port_in_their_own_pod_networks(lab, twins):
    name = twins
    for ns in ("unidesk", "unidesk-dev"):
        wait_for(
            lambda: (get(lab, ns, f"deployment/{name}").get("status") or {}).get("availableReplicas") == 1,
            f"{ns}/{name} available",
        )
    cluster = json.loads(lab["layout"].cluster_file.read_text())["services"]
    prod, dev = cluster[f"unidesk/{name}"], cluster[f"unidesk-dev/{name}"]
    assert prod["clusterIP"] != dev["clusterIP"] and prod["endpoints"][0]["ip"] != dev["endpoints"][0]["ip"]
    assert get(lab, "unidesk", f"service/{name}")["spec"]["clusterIP"] == prod["clusterIP"]
    for entry in (prod, dev):  # pod and Service addresses are on D601's pod and service ranges, not the host's
        assert entry["endpoints"][0]["ip"].startswith("10.244.") and entry["clusterIP"].startswith("10.96.")
    # from the main server (the microservice proxies' host), by Service address
    fetch = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())"
    for entry, page in ((prod, "prod-copy"), (dev, "dev-copy")):
        out = ssh(lab, MAIN, ["python3", "-c", fetch, f"http://{entry['clusterIP']}/"]).stdout.decode().strip()
        assert out == page
    # from a pod, by cluster DNS name: another namespace's Service, and its own (hairpin)
    request = "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {host} 80 | tail -1"
    assert (
        in_pod(lab, "unidesk", name, request.format(host=f"{name}.unidesk-dev.svc.cluster.local")).strip() == "dev-copy"
    )
    assert in_pod(lab, "unidesk", name, request.format(host=f"{name}.unidesk.svc.cluster.local")).strip() == "prod-copy"
    assert (
        in_pod(lab, "unidesk-dev", name, request.format(host=name)).strip() == "dev-copy"
    )  # short name, own namespace
    # no pod on the host network: the pod's interfaces are its own
    assert lab["addresses"][D601] not in in_pod(lab, "unidesk", name, "ip -o -4 addr")


def test_jobs_run_to_completion_and_report_failure(lab):
    name = f"job-{uuid.uuid4().hex[:6]}"
    jobs = [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"{name}-{outcome}", "namespace": "unidesk-dev"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "c",
                                "image": IMAGE,
                                "command": ["/bin/sh", "-c", f"exit {code}"],
                                "resources": {"limits": {"cpu": "50m", "memory": "16Mi"}},
                            }
                        ],
                    }
                },
            },
        }
        for outcome, code in (("ok", 0), ("bad", 3))
    ]
    kubectl(lab, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump_all(jobs))
    try:
        ok = wait_for(
            lambda: (get(lab, "unidesk-dev", f"job/{name}-ok").get("status") or {}).get("succeeded"), "job ok"
        )
        assert ok == 1
        bad = wait_for(
            lambda: (s := get(lab, "unidesk-dev", f"job/{name}-bad").get("status") or {}).get("conditions") and s,
            "job bad ends",
        )
        assert bad["failed"] == 1 and not bad.get("succeeded")
        assert bad["conditions"][0]["type"] == "Failed" and bad["conditions"][0]["reason"] == "BackoffLimitExceeded"
    finally:
        kubectl(lab, "-n", "unidesk-dev", "delete", "job", f"{name}-ok", f"{name}-bad", check=False)
