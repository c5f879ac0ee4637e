"""The job store's files without pydantic: the layout of a job directory, job ids, worker liveness,
and the light readers `job status` and `job list` answer from.

Start-up time is part of the CLI (scripts poll `job status`; bench/startup.py): these commands
must not load pydantic. The documents stay defined once, in documents.py; the light readers check
job.json and events.jsonl against the shapes generated from those models
(`document_shapes.json`, written by `python -m unidesk_tui.documents`, kept fresh by a test) and
print exactly what the pydantic documents would. Anything they do not accept as is (a record
written before a field existed, a float, an active job whose worker died and must be recorded as
interrupted, any error) they leave to the typed store in jobs.py: `None` means "ask jobs.py".
"""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

from unidesk_tui.enums import JOB_ACTIVE
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.files import pid_running

JOB_ID_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")  # always fullmatch: `$` would accept a trailing newline
JOB_FILE = "job.json"
EVENTS_FILE = "events.jsonl"
HOST = os.uname().nodename  # = socket.gethostname() on Linux, without loading socket
SHAPES_FILE = Path(__file__).with_name("document_shapes.json")

JSON = Any  # a value json.loads returns


# -- layout and ids ------------------------------------------------------------------------------


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not JOB_ID_RE.fullmatch(job_id):
        raise UnideskError.of(
            ErrorCode.JOB_NOT_FOUND, f"{job_id!r} is not a job id (expected e.g. 20261127T081500Z-0a1b2c)"
        )
    return job_id


def jobs_root(state_dir: Path) -> Path:
    return Path(state_dir) / "jobs"


def job_dir(state_dir: Path, job_id: str) -> Path:
    return jobs_root(state_dir) / check_job_id(job_id)


def job_ids(state_dir: Path) -> list[str]:
    """Every job directory's id, newest first (ids sort by creation time)."""
    root = jobs_root(state_dir)
    if not root.is_dir():
        return []
    return sorted((n for n in os.listdir(root) if JOB_ID_RE.fullmatch(n)), reverse=True)


# -- processes -----------------------------------------------------------------------------------


def process_start(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot (tells a reused pid apart), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def process_alive(pid: int | None, start: int | None = None) -> bool:
    """True while `pid` runs (not a zombie) and, when `start` is known, is the same process."""
    if not pid or pid <= 0 or not pid_running(pid):
        return False
    now = None if start is None else process_start(pid)  # None: no /proc to tell a reused pid apart
    return now is None or now == start


def worker_dead(status: str, host: str, pid: int | None, start: int | None) -> bool:
    """An active job of this host whose worker is gone (it is to be recorded as interrupted)."""
    if status not in JOB_ACTIVE or host != HOST:
        return False  # another host's processes cannot be checked from here
    return not process_alive(pid, start)


# -- the event log's tail ------------------------------------------------------------------------


def tail_chunk(path: Path, nbytes: int) -> tuple[bytes, int, int]:
    """The whole lines among the last `nbytes` of a log: (bytes, offset of the first line, file
    size), reading at most nbytes + 1."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return b"", 0, 0
    with handle:
        size = os.fstat(handle.fileno()).st_size
        start = max(0, size - max(0, nbytes))
        # Read one byte before `start` to know whether it begins on a line boundary.
        handle.seek(max(0, start - 1))
        chunk = handle.read(size - max(0, start - 1))
    if start > 0:
        if chunk[:1] == b"\n":
            chunk, first = chunk[1:], start
        else:
            cut = chunk.find(b"\n")
            chunk, first = (chunk[cut + 1 :], start - 1 + cut + 1) if cut >= 0 else (b"", size)
    else:
        first = 0
    end = chunk.rfind(b"\n")
    return (chunk[: end + 1] if end >= 0 else b""), first, size


# -- the documents' shapes -----------------------------------------------------------------------


class Unlike(Exception):
    """The light reader does not take this as is: the typed store must read it."""


@cache
def shapes() -> dict[str, JSON]:
    """Model name -> its trimmed JSON schema (document_shapes.json)."""
    shaped: dict[str, JSON] = json.loads(SHAPES_FILE.read_bytes())
    return shaped


def conform(value: JSON, schema: JSON) -> None:
    """Raise Unlike unless `value` is what the model's own dump of it would be: every field present,
    in the model's order, of its exact JSON type (no coercion, no defaults, no floats)."""
    if schema is True or schema == {}:  # Any
        _plain(value)
        return
    if "$ref" in schema:
        schema = shapes()[schema["$ref"]]
    if "anyOf" in schema:
        for option in schema["anyOf"]:
            try:
                conform(value, option)
                return
            except Unlike:
                continue
        raise Unlike
    if "const" in schema:
        if type(value) is not type(schema["const"]) or value != schema["const"]:
            raise Unlike
        return
    if "enum" in schema:
        if type(value) is not str or value not in schema["enum"]:
            raise Unlike
        return
    kind = schema.get("type")
    if kind == "string":
        # Rust's regex `$` is the end of the text; Python's also matches before a final newline.
        if type(value) is not str or (
            "pattern" in schema and ("\n" in value or not re.search(schema["pattern"], value))
        ):
            raise Unlike
    elif kind == "integer":
        if type(value) is not int:
            raise Unlike
    elif kind == "boolean":
        if type(value) is not bool:
            raise Unlike
    elif kind == "null":
        if value is not None:
            raise Unlike
    elif kind == "array":
        if type(value) is not list:
            raise Unlike
        for item in value:
            conform(item, schema.get("items", True))
    elif kind == "object":
        if type(value) is not dict:
            raise Unlike
        properties = schema.get("properties")
        if properties is not None:
            if list(value) != list(properties):
                raise Unlike
            for name, sub in properties.items():
                conform(value[name], sub)
        else:
            for item in value.values():
                conform(item, schema.get("additionalProperties", True))
    else:
        raise Unlike


def _plain(value: JSON) -> None:
    """Any JSON but floats (whose text json and pydantic may spell differently)."""
    if type(value) in (str, int, bool) or value is None:
        return
    if type(value) is list:
        for item in value:
            _plain(item)
    elif type(value) is dict:
        for item in value.values():
            _plain(item)
    else:
        raise Unlike


def document(model: str, **fields: JSON) -> dict[str, JSON]:
    """A document's fields in its model's order; the ones not given take the model's default."""
    out = {}
    for name, schema in shapes()[model]["properties"].items():
        out[name] = fields.pop(name) if name in fields else schema["default"]
    if fields:
        raise TypeError(f"{model} has no field {', '.join(fields)}")
    return out


def dumps(doc: dict[str, JSON]) -> str:
    """The text pydantic's model_dump_json gives for the same document (compact, UTF-8 as is)."""
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text.encode()  # a lone surrogate (from a \\ud800 escape): pydantic would refuse, so must we
    return text


# -- light readers -------------------------------------------------------------------------------


def _record(state_dir: Path, job_id: str) -> dict[str, JSON]:
    """job.json exactly as JobRecord would dump it, of a job that needs no recording."""
    try:
        record = json.loads((job_dir(state_dir, job_id) / JOB_FILE).read_bytes())
    except (OSError, ValueError, UnideskError):
        raise Unlike from None
    conform(record, shapes()["JobRecord"])
    if worker_dead(record["status"], record["host"], record["workerPid"], record["workerStart"]):
        raise Unlike
    return record


def _log_tail(state_dir: Path, job_id: str, nbytes: int) -> dict[str, JSON]:
    chunk, first, size = tail_chunk(job_dir(state_dir, job_id) / EVENTS_FILE, nbytes)
    events = []
    event_shape = shapes()["JobEvent"]
    for raw in chunk.split(b"\n"):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except ValueError:
            raise Unlike from None
        conform(event, event_shape)
        events.append(event)
    return document("LogTail", size=size, offset=first, truncated=first > 0, events=events)


def status_text(state_dir: Path, job_id: str, tail_bytes: int) -> str | None:
    """`job status` (JobDocument) as printed, or None: ask jobs.py."""
    try:
        record = _record(state_dir, job_id)
        log = _log_tail(state_dir, job_id, tail_bytes)
        return dumps(document("JobDocument", ok=True, job=record, log=log, errors=[]))
    except (Unlike, ValueError):
        return None


def list_text(state_dir: Path) -> str | None:
    """`job list` (JobListDocument) as printed, or None: ask jobs.py."""
    try:
        summary = list(shapes()["JobSummary"]["properties"])
        jobs = []
        for job_id in job_ids(state_dir):
            record = _record(state_dir, job_id)
            jobs.append({name: record[name] for name in summary})
        return dumps(document("JobListDocument", ok=True, jobs=jobs, errors=[]))
    except (Unlike, ValueError):
        return None


def help_text(prog: str, usage: str) -> str:
    """`-h`/`--help` (HelpDocument) as printed."""
    return dumps(document("HelpDocument", prog=prog, usage=usage))
