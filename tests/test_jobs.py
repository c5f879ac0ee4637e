"""The job store, event log, tails, redaction, process liveness and locks (no lab needed)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.conftest import job_record as record
from tests.conftest import wait_for
from unidesk_tui import jobs, locks
from unidesk_tui.documents import StepRecord
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.model import JOB_TERMINAL
from unidesk_tui.redact import Redactor, redact, redact_url, secret_env_values


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def sleeper():
    proc = subprocess.Popen(["sleep", "300"])
    yield proc
    proc.kill()
    proc.wait()


def rchar() -> int:
    """Bytes this process has read through read(2) so far (/proc/self/io)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar")


# ---- ids and job.json ---------------------------------------------------------------------------


def test_job_ids_sort_by_time_and_reject_paths():
    a = jobs.new_job_id(datetime(2026, 11, 27, 8, 15, tzinfo=UTC))
    b = jobs.new_job_id(datetime(2026, 11, 27, 8, 16, tzinfo=UTC))
    assert a.startswith("20261127T081500Z-") and a < b and jobs.JOB_ID_RE.fullmatch(a)
    for bad in ("../../etc", "20261127T081500Z-zzzzzz", "-rf", ""):
        with pytest.raises(UnideskError) as err:
            jobs.job_dir(Path("/s"), bad)
        assert err.value.problems[0].code == ErrorCode.JOB_NOT_FOUND


def test_job_ids_created_within_one_second_sort_by_creation_time():
    # jobs started in the same second (prune's keep-N, job list) must not be ordered by chance
    second = datetime(2026, 11, 27, 8, 15, tzinfo=UTC)
    for early, late in [(1_000, 2_000), (5_000, 999_000), (998_000, 999_000)]:
        for _ in range(20):
            a = jobs.new_job_id(second.replace(microsecond=early))
            b = jobs.new_job_id(second.replace(microsecond=late))
            assert a < b and jobs.JOB_ID_RE.fullmatch(a) and jobs.JOB_ID_RE.fullmatch(b)


def test_job_json_is_rewritten_atomically(tmp_path):
    rec = record()
    d = jobs.create_job(tmp_path, rec)
    updated = jobs.update_job(tmp_path, rec.id, lambda r: r.model_copy(update={"status": "running"}))
    assert updated.status == "running" and jobs.load_job(tmp_path, rec.id).status == "running"
    assert sorted(p.name for p in d.iterdir() if not p.name.startswith(".lock")) == ["job.json"]  # no temp files left
    assert json.loads((d / "job.json").read_text())["id"] == rec.id
    with pytest.raises(FileExistsError):
        jobs.create_job(tmp_path, rec)
    with pytest.raises(UnideskError):
        jobs.load_job(tmp_path, jobs.new_job_id())


def test_temp_files_of_dead_writers_are_removed_on_the_next_write(tmp_path, sleeper):
    """Issue 13: a writer killed between its temp file and the rename leaves `.job.json.<pid>.<tid>.tmp`."""
    rec = record()
    d = jobs.create_job(tmp_path, rec)
    dead = d / f".job.json.{dead_pid()}.140000.tmp"
    live = d / f".job.json.{sleeper.pid}.140000.tmp"  # a writer still at work
    other = d / f".catalog.json.{dead_pid()}.1.tmp"  # another file's: left to that file's next write
    for path in (dead, live, other):
        path.write_text("{")
    jobs.update_job(tmp_path, rec.id, lambda r: r.model_copy(update={"status": "running"}))
    assert not dead.exists() and live.exists() and other.exists()


def test_temp_files_of_a_killed_writer_still_a_zombie_are_removed_on_the_next_write(tmp_path):
    """R2-lab found it: a worker killed -9 by its launcher's process (the console, an in-process
    apply) stays a zombie until reaped; its pid still answers kill(0), yet it writes no more."""
    rec = record()
    d = jobs.create_job(tmp_path, rec)
    child = subprocess.Popen(["true"])
    wait_for(lambda: Path(f"/proc/{child.pid}/stat").read_text().split(")")[-1].split()[0] == "Z", "a zombie")
    try:
        left = d / f".job.json.{child.pid}.140000.tmp"
        left.write_text("{")
        jobs.update_job(tmp_path, rec.id, lambda r: r.model_copy(update={"status": "running"}))
        assert not left.exists()
    finally:
        child.wait()


def test_list_jobs_newest_first_skipping_junk(tmp_path):
    old = record(jobs.new_job_id(datetime(2026, 1, 1, tzinfo=UTC)))
    new = record(jobs.new_job_id(datetime(2026, 2, 1, tzinfo=UTC)))
    for r in (old, new):
        jobs.create_job(tmp_path, r)
    (jobs.jobs_root(tmp_path) / "not-a-job").mkdir()
    broken = jobs.jobs_root(tmp_path) / jobs.new_job_id(datetime(2026, 3, 1, tzinfo=UTC))
    broken.mkdir()
    (broken / "job.json").write_text("{")
    assert [r.id for r in jobs.list_jobs(tmp_path)] == [new.id, old.id]
    assert jobs.list_jobs(tmp_path / "nothing") == []


# ---- interrupted --------------------------------------------------------------------------------


def test_a_running_job_whose_worker_died_is_recorded_interrupted(tmp_path):
    pid = dead_pid()
    rec = record(
        status="running",
        workerPid=pid,
        workerStart=None,
        steps=[
            StepRecord(service="svc", name="fetch", status="succeeded"),
            StepRecord(service="svc", name="build", status="running"),
            StepRecord(service="svc", name="verify"),
        ],
    )
    jobs.create_job(tmp_path, rec)
    got = jobs.load_job(tmp_path, rec.id)
    assert got.status == "interrupted" and got.endedAt and not got.result.ok
    assert [s.status for s in got.steps] == ["succeeded", "failed", "pending"] and got.steps[
        1
    ].code == ErrorCode.INTERRUPTED
    assert got.result.errors[0].code == ErrorCode.INTERRUPTED and str(pid) in got.result.errors[0].message
    assert json.loads((jobs.job_dir(tmp_path, rec.id) / "job.json").read_text())["status"] == "interrupted"
    assert "is gone" in jobs.read_events(tmp_path, rec.id)[0][-1].text


def test_live_reused_and_finished_workers(tmp_path, sleeper):
    live = record(status="running", workerPid=sleeper.pid, workerStart=jobs.process_start(sleeper.pid))
    reused = record(status="running", workerPid=sleeper.pid, workerStart=jobs.process_start(sleeper.pid) - 1)
    done = record(status="succeeded", workerPid=dead_pid())
    other_host = record(status="running", workerPid=dead_pid(), host="elsewhere")
    for r in (live, reused, done, other_host):
        jobs.create_job(tmp_path, r)
    assert jobs.load_job(tmp_path, live.id).status == "running"
    assert jobs.load_job(tmp_path, reused.id).status == "interrupted"  # same pid, another process
    assert jobs.load_job(tmp_path, done.id).status == "succeeded"
    assert jobs.load_job(tmp_path, other_host.id).status == "running"  # cannot judge another host's pids


def test_process_alive_sees_zombies_as_dead():
    proc = subprocess.Popen(["true"])
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    assert not jobs.process_alive(proc.pid)
    proc.wait()
    assert jobs.process_alive(os.getpid(), jobs.process_start(os.getpid()))
    assert not jobs.process_alive(None) and not jobs.process_alive(dead_pid())


# ---- the event log ------------------------------------------------------------------------------


def test_events_have_increasing_seq_across_writers_and_are_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOY_API_TOKEN", "tok-9f8e7d6c5b")
    rec = record()
    jobs.create_job(tmp_path, rec)
    log1 = jobs.EventLog(tmp_path, rec.id)
    log1.append("hello", step="build", service="svc")
    log1.append(
        "pushing with tok-9f8e7d6c5b to http://ci:pa55w0rd@git.example/x.git",
        step="build",
        service="svc",
        stream="stderr",
    )
    jobs.EventLog(tmp_path, rec.id).append("later writer")
    evs, offset = jobs.read_events(tmp_path, rec.id)
    assert [e.seq for e in evs] == [1, 2, 3] and offset == (
        jobs.job_dir(tmp_path, rec.id) / "events.jsonl"
    ).stat().st_size
    assert evs[0].step == "build" and evs[0].service == "svc" and evs[0].stream == "stdout" and evs[0].ts.endswith("Z")
    raw = (jobs.job_dir(tmp_path, rec.id) / "events.jsonl").read_text()
    assert "tok-9f8e7d6c5b" not in raw and "pa55w0rd" not in raw and "http://***@git.example" in raw


def test_read_events_is_incremental_and_leaves_a_partial_line(tmp_path):
    rec = record()
    jobs.create_job(tmp_path, rec)
    log = jobs.EventLog(tmp_path, rec.id)
    log.append("one")
    evs, off = jobs.read_events(tmp_path, rec.id)
    assert [e.text for e in evs] == ["one"]
    log.append("two")
    path = jobs.job_dir(tmp_path, rec.id) / "events.jsonl"
    with open(path, "ab") as f:
        f.write(b'{"ts":"x","seq":9,"stream":"stdout","te')  # a writer mid-line
    evs, off2 = jobs.read_events(tmp_path, rec.id, off)
    assert [e.text for e in evs] == ["two"] and jobs.read_events(tmp_path, rec.id, off2) == ([], off2)


def test_tail_returns_whole_lines_and_reads_only_the_tail(tmp_path):
    rec = record()
    jobs.create_job(tmp_path, rec)
    path = jobs.job_dir(tmp_path, rec.id) / "events.jsonl"

    def line(i):
        return (
            json.dumps(
                {
                    "ts": "2026-11-27T08:00:00.000Z",
                    "seq": i,
                    "step": "build",
                    "service": "svc",
                    "stream": "stdout",
                    "text": f"line {i} " + "x" * 80,
                }
            )
            + "\n"
        )

    with open(path, "w") as f:
        f.write("".join(line(i) for i in range(1, 200_001)))  # ~25 MB
    size = path.stat().st_size
    before = rchar()
    t = jobs.tail(tmp_path, rec.id, 30000)
    read = rchar() - before
    assert read < 30000 + 16384, f"tail read {read} bytes of a {size} byte log"
    assert t.size == size and t.truncated and t.events[-1].seq == 200_000
    assert [e.seq for e in t.events] == list(range(t.events[0].seq, 200_001))
    assert size - t.offset <= 30000 and t.offset == sum(len(line(i)) for i in range(1, t.events[0].seq))
    assert jobs.tail(tmp_path, rec.id, 0).events == []
    assert len(jobs.tail(tmp_path, rec.id, len(line(200_000))).events) == 1  # exactly one whole line
    assert len(jobs.tail(tmp_path, rec.id, len(line(200_000)) - 1).events) == 0
    whole = jobs.tail(tmp_path, rec.id, size * 2)
    assert not whole.truncated and whole.offset == 0 and len(whole.events) == 200_000


def test_tail_of_a_job_without_events_and_of_no_job(tmp_path):
    rec = record()
    jobs.create_job(tmp_path, rec)
    t = jobs.tail(tmp_path, rec.id, 100)
    assert t.events == [] and t.size == 0 and not t.truncated
    with pytest.raises(UnideskError):
        jobs.tail(tmp_path, jobs.new_job_id(), 100)


# ---- redaction ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, secret",
    [
        ("git fetch https://user:hunter22@github.com/o/r.git", "hunter22"),
        ("git fetch https://u:p@ss@github.com/o/r.git", "ss@"),
        ("proxy http://a@b:c@d@10.0.0.1:3128 down", "c@d"),
        ("HTTPS_PROXY=http://proxyuser:pr0xy@10.0.0.1:3128", "pr0xy"),
        ("Authorization: Bearer eyJhbGciOi.abc", "eyJhbGciOi.abc"),
        ("Proxy-Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("--build-arg NPM_TOKEN=abc123xyz", "abc123xyz"),
        ('{"db_password": "s3cret!"}', "s3cret!"),
        ("DB_PASSWORD='two words'", "two words"),
        ("token ghp_0123456789abcdefghijABCDEFGHIJ012345", "ghp_0123456789abcdefghijABCDEFGHIJ012345"),
        ("?access_token=qwerty12&x=1", "qwerty12"),
    ],
)
def test_redaction_patterns(text, secret):
    out = redact(text)
    assert secret not in out and "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "target_build_proxy=http://127.0.0.1:18789",
        "unidesk.ai/source-commit=0123abcd",
        "author: Lab Author",
        "BUILDKIT_INLINE_CACHE=1",
        "sha256:0123456789abcdef",
        "step 3/4 RUN make",
    ],
)
def test_redaction_keeps_ordinary_output(text):
    assert redact(text) == text


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://u:p@ss@host/x", "https://***@host/x"),
        ("https://tok@host", "https://***@host"),
        ("ssh://git@host:22/o/r.git", "ssh://***@host:22/o/r.git"),
        ("https://host/path@v1?q=a@b#f@g", "https://host/path@v1?q=a@b#f@g"),
        ("'http://x:y@z@h:1' and http://h2/", "'http://***@h:1' and http://h2/"),
        ("http://127.0.0.1:18789", "http://127.0.0.1:18789"),
    ],
)
def test_redact_url_masks_userinfo_up_to_the_last_at(url, shown):
    from unidesk_tui.resolve import redact_url as resolve_redact_url

    assert redact_url(url) == shown and redact(url) == shown
    assert resolve_redact_url is redact_url  # one implementation


def test_literal_secrets_and_secret_env_values():
    r = Redactor(["abc", "longer-secret-value"])  # too short to mask is ignored
    assert r("abc longer-secret-value") == "abc ***"
    assert secret_env_values({"GITHUB_TOKEN": "t", "PATH": "/bin", "my_password": "p"}) == ["t", "p"]


# ---- locks --------------------------------------------------------------------------------------


def test_lock_records_holder_and_refuses_a_live_one(tmp_path, sleeper):
    job_a, job_b = jobs.new_job_id(), jobs.new_job_id()
    assert locks.acquire(tmp_path, "dev", ["frontend"], job_a, pid=sleeper.pid) == []
    held = locks.read_lock(tmp_path, "dev", "frontend")
    assert (held.pid, held.jobId, held.host, held.environment) == (
        sleeper.pid,
        job_a,
        jobs.HOST,
        "dev",
    ) and held.time.endswith("Z")
    with pytest.raises(UnideskError) as err:
        locks.acquire(tmp_path, "dev", ["frontend"], job_b)
    assert err.value.problems[0].code == ErrorCode.LOCKED and job_a in err.value.problems[0].message
    # Other environments and services are independent.
    assert locks.acquire(tmp_path, "file", ["frontend"], job_b) == []
    assert locks.acquire(tmp_path, "dev", ["backend-core"], job_b) == []


def test_locks_are_all_or_nothing(tmp_path, sleeper):
    holder = jobs.new_job_id()
    locks.acquire(tmp_path, "file", ["b"], holder, pid=sleeper.pid)
    with pytest.raises(UnideskError):
        locks.acquire(tmp_path, "file", ["a", "b"], jobs.new_job_id())
    assert locks.read_lock(tmp_path, "file", "a") is None


def test_stale_locks_are_taken_over_and_logged(tmp_path, caplog, sleeper):
    dead_job, ended_job, new_job = jobs.new_job_id(), jobs.new_job_id(), jobs.new_job_id()
    locks.acquire(tmp_path, "file", ["a"], dead_job, pid=dead_pid())
    jobs.create_job(tmp_path, record(ended_job, status="failed", workerPid=sleeper.pid))
    locks.acquire(tmp_path, "file", ["b"], ended_job, pid=sleeper.pid)  # alive, but its job ended
    with caplog.at_level(logging.WARNING, logger="unidesk_tui.locks"):
        taken = locks.acquire(tmp_path, "file", ["a", "b"], new_job)
    assert len(taken) == 2 and dead_job in taken[0] and "dead" in taken[0] and ended_job in taken[1]
    assert sum("took over" in r.message for r in caplog.records) == 2
    assert locks.read_lock(tmp_path, "file", "a").jobId == new_job


def test_release_only_touches_the_jobs_own_locks(tmp_path, sleeper):
    mine, theirs = jobs.new_job_id(), jobs.new_job_id()
    locks.acquire(tmp_path, "file", ["a"], mine, pid=sleeper.pid)
    assert locks.read_lock(tmp_path, "file", "a").pid == sleeper.pid
    locks.release(tmp_path, "file", ["a"], theirs)
    assert locks.read_lock(tmp_path, "file", "a") is not None
    locks.release(tmp_path, "file", ["a"], mine)
    assert locks.read_lock(tmp_path, "file", "a") is None
    with pytest.raises(ValueError):
        locks.lock_path(tmp_path, "file", "../x")


# ---- retention: prune and the bounded event log ------------------------------------------------


def _jobs_at(tmp_path, statuses: list[str], sleeper) -> list[str]:
    """Jobs created a minute apart, oldest first; running ones are held by a live `sleeper`."""
    ids = []
    for i, status in enumerate(statuses):
        job_id = jobs.new_job_id(datetime(2026, 11, 27, 8, i, tzinfo=UTC))
        ended = f"2026-11-27T08:{i:02d}:30Z" if status in JOB_TERMINAL else None
        jobs.create_job(
            tmp_path,
            record(
                job_id,
                status=status,
                endedAt=ended,
                createdAt=f"2026-11-27T08:{i:02d}:00Z",
                workerPid=sleeper.pid,
                workerStart=jobs.process_start(sleeper.pid),
            ),
        )
        ids.append(job_id)
    return ids


def test_prune_keeps_the_newest_finished_and_every_running_job(tmp_path, sleeper):
    ids = _jobs_at(
        tmp_path, ["succeeded", "running", "failed", "cancelled", "interrupted", "succeeded", "queued"], sleeper
    )
    removed, kept = jobs.prune(tmp_path, keep=3)
    assert removed == [ids[2], ids[0]]
    assert kept == [ids[6], ids[5], ids[4], ids[3], ids[1]]
    assert sorted(os.listdir(jobs.jobs_root(tmp_path))) == sorted(kept)
    assert jobs.prune(tmp_path, keep=0)[0] == [ids[5], ids[4], ids[3]]
    assert [r.id for r in jobs.list_jobs(tmp_path)] == [ids[6], ids[1]]


def test_prune_older_than_and_both_bounds(tmp_path, sleeper):
    from datetime import timedelta

    ids = _jobs_at(tmp_path, ["succeeded", "failed", "succeeded"], sleeper)
    young = jobs.new_job_id()
    jobs.create_job(tmp_path, record(young, status="succeeded", endedAt=jobs.now_iso()))
    assert jobs.prune(tmp_path) == ([], [young, ids[2], ids[1], ids[0]])  # no bound: nothing goes
    # both: beyond the 2 newest AND ended more than an hour ago
    assert jobs.prune(tmp_path, keep=2, older_than=timedelta(hours=1))[0] == [ids[1], ids[0]]
    assert jobs.prune(tmp_path, older_than=jobs.parse_duration("1h"))[0] == [ids[2]]
    assert [r.id for r in jobs.list_jobs(tmp_path)] == [young]


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600)])
def test_parse_duration(text, seconds):
    assert jobs.parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["", "7", "d", "-1d", "1.5h", "7days", "1y"])
def test_parse_duration_refuses(bad):
    with pytest.raises(UnideskError) as err:
        jobs.parse_duration(bad)
    assert err.value.problems[0].code == ErrorCode.USAGE


def test_event_log_keeps_head_and_tail_and_marks_the_dropped_middle(tmp_path):
    job_id = jobs.new_job_id()
    jobs.create_job(tmp_path, record(job_id))
    events = jobs.EventLog(tmp_path, job_id, max_bytes=64 * 1024)
    follower = 0
    seen: list[int] = []
    for i in range(1, 3001):
        events.append(f"line {i:05d} " + "x" * 80)
        if i % 250 == 0:  # a follower reading incrementally never stalls on a trimmed log
            got, follower = jobs.read_events(tmp_path, job_id, follower)
            seen += [e.seq for e in got]
    path = jobs.job_dir(tmp_path, job_id) / jobs.EVENTS_FILE
    assert path.stat().st_size <= 64 * 1024
    got = jobs.read_events(tmp_path, job_id)[0]
    marks = [e for e in got if e.text.startswith(jobs.TRIM_MARK)]
    assert len(marks) == 1 and marks[0].stream == "engine"
    head = got[: got.index(marks[0])]
    tail = got[got.index(marks[0]) + 1 :]
    assert head[0].text.startswith("line 00001") and [e.seq for e in head] == list(range(1, len(head) + 1))
    assert tail[-1].text.startswith("line 03000") and [e.seq for e in tail] == list(range(tail[0].seq, 3001))
    assert f"events {len(head) + 1}–{tail[0].seq - 1}" in marks[0].text
    assert seen[-1] == 3000 and set(range(tail[0].seq, 3001)) <= set(seen)
    # a new writer (the worker after a restart) continues the sequence
    assert jobs.EventLog(tmp_path, job_id, max_bytes=64 * 1024).append("next").seq == 3001


def test_a_lock_whose_recorded_pid_died_is_not_stale_while_its_job_runs(tmp_path, sleeper):
    """Issue 13 defect 1: the CLI that wrote the lock died, but the job's worker is alive."""
    job = jobs.new_job_id()
    jobs.create_job(
        tmp_path, record(job, status="running", workerPid=sleeper.pid, workerStart=jobs.process_start(sleeper.pid))
    )
    locks.acquire(tmp_path, "file", ["a"], job, pid=dead_pid())
    with pytest.raises(UnideskError) as err:
        locks.acquire(tmp_path, "file", ["a"], jobs.new_job_id())
    assert err.value.problems[0].code == ErrorCode.LOCKED and job in err.value.problems[0].message


def test_a_lock_is_not_stale_while_its_holder_lives_even_before_its_job_is_recorded(tmp_path, sleeper):
    job = jobs.new_job_id()
    locks.acquire(tmp_path, "file", ["a"], job, pid=sleeper.pid)
    with pytest.raises(UnideskError):
        locks.acquire(tmp_path, "file", ["a"], jobs.new_job_id())
    sleeper.kill()
    sleeper.wait()
    assert "never recorded" in locks.acquire(tmp_path, "file", ["a"], jobs.new_job_id())[0]


def test_held_reports_live_locks_without_taking_anything(tmp_path, sleeper):
    job = jobs.new_job_id()
    locks.acquire(tmp_path, "dev", ["a"], job, pid=sleeper.pid)
    problems = locks.held(tmp_path, "dev", ["a", "b"])
    assert [(p.code, p.service) for p in problems] == [(ErrorCode.LOCKED, "a")] and job in problems[0].message
    assert locks.read_lock(tmp_path, "dev", "b") is None and locks.held(tmp_path, "file", ["a"]) == []


def test_job_ids_do_not_accept_a_trailing_newline():
    job = jobs.new_job_id()
    with pytest.raises(UnideskError):
        jobs.check_job_id(job + "\n")


@pytest.mark.parametrize("corrupt", ["truncated", "wrong type"])
def test_a_corrupt_job_json_is_a_coded_error_naming_the_job_and_its_file(tmp_path, capsys, corrupt):
    """Trial 2: a truncated job.json or `{"id": 5}` made job status/cancel internal_error, and job
    list/prune silently left the job out. A tampered state file is not a bug of ours: `job_unreadable`
    naming the job and the file, in status, cancel, list and prune alike."""
    from unidesk_tui.cli import main as cli_main

    good = record(status="succeeded", endedAt=jobs.now_iso())
    jobs.create_job(tmp_path, good)
    bad = record(status="succeeded", endedAt=jobs.now_iso())
    path = jobs.create_job(tmp_path, bad) / "job.json"
    path.write_bytes(path.read_bytes()[:100] if corrupt == "truncated" else b'{"id": 5}')

    def cli(*argv: str) -> tuple[int, dict]:
        rc = cli_main(["--workspace", str(tmp_path), "--state-dir", str(tmp_path), *argv])
        return rc, json.loads(capsys.readouterr().out)

    def assert_names_it(errors: list[dict]) -> None:
        assert [e["code"] for e in errors] == ["job_unreadable"], errors
        assert bad.id in errors[0]["message"] and errors[0]["path"] == str(path), errors

    for command in ("status", "cancel"):
        rc, doc = cli("job", command, bad.id)
        assert rc == 1 and doc["ok"] is False, doc
        assert_names_it(doc["errors"])
    rc, doc = cli("job", "list")
    assert rc == 0 and doc["ok"] is True and [j["id"] for j in doc["jobs"]] == [good.id], doc
    assert_names_it(doc["errors"])
    rc, doc = cli("job", "prune", "--keep", "0")
    assert rc == 0 and doc["removed"] == [good.id] and doc["kept"] == [bad.id], doc
    assert_names_it(doc["errors"])
