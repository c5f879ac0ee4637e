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
    crashes = pod_crashes(
        pod(
            {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
            {"terminated": {"exitCode": 3, "reason": "Error"}},
            1,
        )
    )
    assert [c.describe() for c in crashes] == [
        "pod ns/dc-1 container app exited with exit code 3 (CrashLoopBackOff, 1 restart)"
    ]


def test_pod_terminated_waiting_for_image_and_running():
    assert pod_crashes(pod({"terminated": {"exitCode": 0, "reason": "Completed"}}))[0].exit_code == 0
    pulled = pod_crashes(pod({"waiting": {"reason": "ImagePullBackOff", "message": "not present"}}))
    assert pulled[0].exit_code is None and "ImagePullBackOff: not present" in pulled[0].describe()
    assert pod_crashes(pod({"running": {}})) == []
    assert pod_crashes(pod({"waiting": {"reason": "ContainerCreating"}})) == []


def _deployment(generation: int, observed: int, annotations: dict) -> dict:
    return {
        "metadata": {"name": "code-queue", "generation": generation},
        "status": {"observedGeneration": observed},
        "spec": {"template": {"metadata": {"labels": {"app": "code-queue"}, "annotations": annotations}}},
    }


def _pod(name: str, annotations: dict, state: dict, last: dict | None = None, restarts: int = 0) -> dict:
    return {
        "metadata": {"name": name, "namespace": "unidesk", "labels": {"app": "code-queue"}, "annotations": annotations},
        "status": {
            "containerStatuses": [
                {"name": "code-queue", "state": state, "lastState": last or {}, "restartCount": restarts}
            ]
        },
    }


def test_rollout_ignores_the_previous_generations_crash_looping_pod_of_the_same_commit():
    """Trial: the previous code-queue pod had crash-looped (137); the apply of the same commit failed
    89 ms later on THAT pod, before the controller had even acted on the new generation."""
    from executors.deployments import current_template_pods

    commit = "a" * 40
    old_template = {"UNIDESK_DEPLOY_COMMIT": commit, "unidesk/job": "job-a"}
    new_template = {"UNIDESK_DEPLOY_COMMIT": commit, "unidesk/job": "job-b"}
    crashed = _pod(
        "code-queue-1",
        old_template,
        {"waiting": {"reason": "CrashLoopBackOff"}},
        {"terminated": {"exitCode": 137, "reason": "Error"}},
        1,
    )
    assert pod_crashes(crashed)  # it is a crash, of this commit ...
    # ... but the new generation is not observed yet: no pod is the new template's
    assert current_template_pods(_deployment(2, 1, new_template), [crashed], commit) == []
    # observed: the old template's pod (if still listed) is not judged; the new, running one is, and is fine
    good = _pod("code-queue-2", new_template, {"running": {}})
    pods = current_template_pods(_deployment(2, 2, new_template), [crashed, good], commit)
    assert pods == [good] and pod_crashes(good) == []
    # the new template's own crash is still caught (fail fast)
    bad = _pod("code-queue-2", new_template, {"terminated": {"exitCode": 7, "reason": "Error"}})
    assert [
        c.exit_code
        for p in current_template_pods(_deployment(2, 2, new_template), [crashed, bad], commit)
        for c in pod_crashes(p)
    ] == [7]
    # another commit's pod is never this rollout's
    assert (
        current_template_pods(
            _deployment(2, 2, new_template),
            [_pod("x-2", {**new_template, "UNIDESK_DEPLOY_COMMIT": "b" * 40}, {"running": {}})],
            commit,
        )
        == []
    )
