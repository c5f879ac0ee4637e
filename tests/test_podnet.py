"""Pure parts of the lab's pod network: ClusterIP allocation, the nat rules and the hosts files."""

from __future__ import annotations

from pathlib import Path

from unidesk_lab.kubeapi import Store, find_resource
from unidesk_lab.podnet import CHAIN, Endpoint, PodNetwork, hosts_text, netns_name

SERVICES = find_resource("", "services")


def network(tmp_path: Path) -> PodNetwork:
    return PodNetwork("10.244.7.0/24", "10.96.7.0/24", tmp_path)


def test_the_store_allocates_a_cluster_ip_once_and_keeps_it_on_replace(tmp_path):
    store = Store(None)
    store.allocate_cluster_ip = network(tmp_path).allocate
    store.create(find_resource("", "namespaces"), None, {"metadata": {"name": "unidesk-dev"}})
    body = {"metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}
    first = store.create(SERVICES, "unidesk-dev", body)
    second = store.create(SERVICES, "unidesk-dev", {**body, "metadata": {"name": "api"}})
    headless = store.create(
        SERVICES, "unidesk-dev", {"metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}}
    )
    assert first["spec"]["clusterIP"] == "10.96.7.2" and second["spec"]["clusterIP"] == "10.96.7.3"
    assert headless["spec"]["clusterIP"] == "None"
    replaced = store.update(
        SERVICES,
        "unidesk-dev",
        "web",
        {**body, "metadata": {**body["metadata"], "resourceVersion": first["metadata"]["resourceVersion"]}},
    )
    assert replaced["spec"]["clusterIP"] == "10.96.7.2"


def test_hosts_files_name_services_by_cluster_name_and_short_name_only_in_their_namespace():
    names = {"unidesk": [("10.96.7.2", "code-queue")], "unidesk-dev": [("10.96.7.3", "code-queue-read-dev")]}
    text = hosts_text("unidesk-dev", names)
    assert "10.96.7.2\tcode-queue.unidesk.svc.cluster.local code-queue.unidesk\n" in text
    assert (
        "10.96.7.3\tcode-queue-read-dev.unidesk-dev.svc.cluster.local code-queue-read-dev.unidesk-dev "
        "code-queue-read-dev\n" in text
    )
    assert text.startswith("127.0.0.1\tlocalhost\n")


def test_rules_forward_each_port_to_the_ready_pod_and_masquerade_hairpin_traffic(tmp_path):
    net = network(tmp_path)
    rules = [f"-A {CHAIN} -d 10.96.7.2/32 -p tcp -m tcp --dport 80 -j DNAT --to-destination 10.244.7.5:8080"]
    text = net._rule_text(rules)
    assert text.startswith("*nat\n:UDL-SERVICES - [0:0]\n") and text.rstrip().endswith("COMMIT")
    assert "-s 10.244.7.0/24 -d 10.244.7.0/24 -m conntrack --ctstate DNAT -j MASQUERADE" in text
    assert Endpoint("10.244.7.5", {"http": 8080}).ports["http"] == 8080


def test_pod_namespace_names_are_short_and_stable():
    name = netns_name("Deployment/unidesk-dev/backend-core-dev")
    assert (
        name == netns_name("Deployment/unidesk-dev/backend-core-dev") and name.startswith("udlpod-") and len(name) <= 20
    )
    assert name != netns_name("Deployment/unidesk/backend-core-dev")
