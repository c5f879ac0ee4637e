"""Messages shared by the console's screens and widgets (posted from workers to the UI)."""

from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from unidesk_tui.documents import JobEvent, JobRecord, PlanDocument, PlanItem
from unidesk_tui.model import Environment


@dataclass
class PlanRefreshed(Message):
    """A check finished (or a cached one was loaded) for one environment."""

    environment: Environment
    document: PlanDocument
    refreshed_at: float
    duration_s: float
    stale: bool = False
    generation: int = 0


@dataclass
class RefreshFailed(Message):
    """A check raised instead of returning a document (the core normally reports in-document)."""

    environment: Environment
    error: str
    generation: int = 0


@dataclass
class JobsListed(Message):
    """The job list was re-read from the state directory (newest first)."""

    jobs: list[JobRecord]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobsListed)


@dataclass
class JobStarted(Message):
    """A confirmed apply started a detached job."""

    job_id: str
    environment: Environment
    services: list[str] = field(default_factory=list)


@dataclass
class JobLogBatch(Message):
    """A batch of new events from one job's log, plus the job document as last read."""

    job_id: str
    events: list[JobEvent]
    job: JobRecord | None


@dataclass
class TargetsPending(Message):
    """A refresh started reading these targets; their rows are marked until each answers.
    `items`: the services being read, decided without live state (painted when nothing is yet)."""

    environment: Environment
    targets: set[str]
    items: list[PlanItem]
    generation: int = 0


@dataclass
class TargetAnswered(Message):
    """One target answered (or gave up) during a refresh: its services' items, decided."""

    environment: Environment
    target: str
    items: list[PlanItem]
    generation: int = 0
