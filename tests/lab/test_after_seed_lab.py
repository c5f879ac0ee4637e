"""What `lab up --seed` left on the session lab, checked first, before other lab tests change it.

The dev foundation runs: postgres-dev (StatefulSet, headless Service, bound claim) and the migrate
Job (waited for postgres, ran the guard, prepared the tables). Real containerd, runc and CNI inside
D601; only the Kubernetes API is emulated.
"""

from __future__ import annotations

import pytest

from tests.lab.test_podnet_lab import get, kubectl, wait_for

pytestmark = pytest.mark.lab


def test_seed_left_the_dev_foundation_running(lab):
    ns = "unidesk-dev"
    sts = wait_for(
        lambda: (s := get(lab, ns, "statefulset/postgres-dev")).get("status", {}).get("readyReplicas") == 1 and s,
        "postgres-dev ready",
    )
    assert sts["status"]["observedGeneration"] == sts["metadata"]["generation"]
    job = get(lab, ns, "job/unidesk-dev-db-migrate")
    assert job["status"]["succeeded"] == 1 and any(c["type"] == "Complete" for c in job["status"]["conditions"])
    pvc = get(lab, ns, "pvc/data-postgres-dev-0")
    assert pvc["status"]["phase"] == "Bound" and pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    names = kubectl(lab, "-n", ns, "get", "configmap,secret,resourcequota,limitrange,service", "-o", "name").split()
    for want in (
        "configmap/unidesk-dev-runtime-config",
        "configmap/unidesk-dev-db-guard",
        "secret/unidesk-dev-runtime-secrets",
        "resourcequota/unidesk-dev-quota",
        "limitrange/unidesk-dev-defaults",
        "service/postgres-dev",
    ):
        assert want in names
    # the Job reached postgres-dev by its cluster name, passed the guard, and prepared the tables
    sql = (lab["layout"].kube_data / "pv" / ns / "data-postgres-dev-0" / "pgdata" / "unidesk_dev.sql").read_text()
    assert "CREATE TABLE IF NOT EXISTS backend_core_schema_migrations" in sql and "code_queue_tasks" in sql
    logs = "".join(
        p.read_text()
        for p in (lab["layout"].kube_data / "logs").glob("kubeapi_job.unidesk-dev_unidesk-dev-db-migrate_*")
    )
    assert "db guard: dev database ok" in logs and logs.index("db guard") < logs.index("migrated unidesk_dev")
