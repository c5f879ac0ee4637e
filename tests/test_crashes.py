"""Crash evidence of rollouts (pure): Docker states and Kubernetes pod statuses."""

from __future__ import annotations

from executors.crashes import docker_crash, pod_crashes


def test_docker_exited_container_is_a_crash_with_its_exit_code():
    crash = docker_crash("web_1", {"Status": "exited", "Running": False, "ExitCode": 3}, 0)
    assert crash is not None and crash.exit_code == 3
    text = crash.with_output("line one\n\nboom: cannot start\n").describe()
    assert text == "container web_1 exited with exit code 3 (exited); last output: line one | boom: cannot start"


def test_docker_running_or_starting_is_not_a_crash_but_restarting_is():
    assert docker_crash("web_1", {"Status": "running", "Running": True}, 0) is None
    assert docker_crash("web_1", {"Status": "created", "Running": False}, 0) is None
    loop = docker_crash("web_1", {"Status": "restarting", "Running": True, "Restarting": True, "ExitCode": 1}, 2)
    assert loop is not None and "exit code 1" in loop.describe() and "2 restarts" in loop.describe()
    assert docker_crash("web_1", {"Status": "running", "Running": True, "ExitCode": 0}, 1) is not None


def pod(state: dict, last: dict | None = None, restarts: int = 0) -> dict:
    cs = {"name": "app", "state": state, "restartCount": restarts}
    if last:
        cs["lastState"] = last
    return {"metadata": {"namespace": "ns", "name": "dc-1"}, "status": {"containerStatuses": [cs]}}


def test_pod_crash_loop_reports_the_last_termination():
    crashes = pod_crashes(pod({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}, {"terminated": {"exitCode": 3, "reason": "Error"}}, 1))
    assert [c.describe() for c in crashes] == ["pod ns/dc-1 container app exited with exit code 3 (CrashLoopBackOff, 1 restart)"]


def test_pod_terminated_waiting_for_image_and_running():
    assert pod_crashes(pod({"terminated": {"exitCode": 0, "reason": "Completed"}}))[0].exit_code == 0
    pulled = pod_crashes(pod({"waiting": {"reason": "ImagePullBackOff", "message": "not present"}}))
    assert pulled[0].exit_code is None and "ImagePullBackOff: not present" in pulled[0].describe()
    assert pod_crashes(pod({"running": {}})) == []
    assert pod_crashes(pod({"waiting": {"reason": "ContainerCreating"}})) == []
