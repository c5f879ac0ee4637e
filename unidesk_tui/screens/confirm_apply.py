"""The apply confirmation: names the environment, targets, commits and what will happen; force
and dry-run are chosen here (f, d), for this apply only; y starts it, n or esc cancels.

What it shows is a plan made for this request and bound to its facts (plan_binding): the apply
plans again and refuses with `plan_stale`, naming each difference, if anything moved meanwhile."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from unidesk_tui.documents import EnvSourceDoc, PlanDocument, PlanItem, PlanRequest, SavedPlan
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.model import Environment
from unidesk_tui.screens.typed_app import console_app
from unidesk_tui.widgets.daemon import in_daemon_thread
from unidesk_tui.widgets.guard import guard_handlers
from unidesk_tui.widgets.present import PLAIN, clock_text, parse_ts


@dataclass(frozen=True)
class ApplyRequest:
    """What the operator is asked to confirm, and what the job will be started with."""

    environment: Environment
    document: PlanDocument
    items: tuple[PlanItem, ...]
    force: bool
    dry_run: bool
    manifest_file: str | None = None
    saved: SavedPlan | None = None  # the plan the dialog bound and showed (None until bound)
    bound_at: float | None = None  # when it was bound (the console's clock)


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def where(environment: Environment, manifest_file: str | None = None) -> str:
    return environment.value if environment.named else f"the local {manifest_file or 'deploy.json'}"


def what_happens(item: PlanItem, request: ApplyRequest) -> str:
    sha = (item.commit or "?")[:12]
    if request.dry_run:
        return f"dry run: resolve and plan {sha}; nothing is built or replaced"
    if item.action == "noop" and not request.force:
        return f"already running {sha}: nothing is rebuilt; live verification runs again"
    if item.action == "noop":
        return f"force: rebuild {sha} on {item.target} and roll it out again, although it already runs"
    if item.mode == "k3sctl-managed":
        return f"build {sha} on {item.target}, import into k3s containerd, roll out, verify annotations + health"
    return f"build {sha} on {item.target}, force-recreate its compose service, verify labels, env + health"


def binding_text(request: ApplyRequest, refusal: str | None) -> Text:
    out = Text()
    out.append("Plan         ", style="bold")
    if refusal is not None:
        out.append(f"cannot be bound: {refusal}", style=PLAIN.style("bold $error"))
    elif request.saved is None:
        out.append("binding the plan to the current facts…", style="dim")
    else:
        made = request.bound_at if request.bound_at is not None else parse_ts(request.saved.createdAt)
        out.append(f"bound at {clock_text(made) if made else '?'}", style="bold")
        out.append(
            ": what follows is this plan; if any of its facts moves before the job starts, nothing runs", style="dim"
        )
    return out


def why_text(item: PlanItem, viewed: PlanItem | None) -> str:
    """The bound plan's reason; where the view read the runtime and decided otherwise, both, so the
    dialog does not contradict the plan bar (an environment apply plans without reading the runtime)."""
    if viewed is None or viewed.live is None or viewed.action == item.action:
        return item.reason
    return (
        f"the view read the runtime live ({viewed.action}: {viewed.reason}); an environment apply plans "
        f"from the manifest alone, so it will {item.action} anyway"
    )


def describe(request: ApplyRequest, refusal: str | None = None, viewed: dict[str, PlanItem] | None = None) -> Text:
    doc = request.document
    out = binding_text(request, refusal)
    out.append("\n")
    env = request.environment
    out.append("Environment  ", style="bold")
    if not env.named:
        out.append(f"local file {request.manifest_file or 'deploy.json'}", style="bold yellow")
    else:
        out.append(env.upper(), style=PLAIN.style("bold reverse " + ("$error" if env == "prod" else "$warning")))
        if isinstance(doc.source, EnvSourceDoc):
            out.append(f"  {doc.source.ref} @ {doc.source.manifestCommit}")
        if doc.environment:
            e = doc.environment
            out.append(
                f"\n             namespace {e.namespace} · provider {e.providerId} · db {e.databaseName} "
                f"#{e.databaseFingerprint}"
            )
    out.append("\nOptions      ", style="bold")
    out.append("f force ", style="dim")
    out.append("ON" if request.force else "off", style="bold reverse" if request.force else "")
    out.append("  (rebuild and roll out even what already runs)", style="dim")
    out.append("\n             d dry-run ", style="dim")
    out.append("ON" if request.dry_run else "off", style="bold reverse" if request.dry_run else "")
    out.append("  (resolve and plan only; build and replace nothing)", style="dim")
    targets = sorted({i.target or "?" for i in request.items})
    out.append("\nTargets      ", style="bold")
    out.append(", ".join(targets), style="bold")
    out.append(f"\n\n{plural(len(request.items), 'service')}:\n", style="bold")
    for item in request.items:
        out.append(f"\n • {item.id}", style="bold")
        out.append(f"  on {item.target} ({item.mode})")
        out.append(f"\n   commit {item.commit or '?'}")
        if item.requestedCommit and item.commit and not item.commit.startswith(item.requestedCommit):
            out.append(f" (requested {item.requestedCommit})")
        out.append(f"\n   {what_happens(item, request)}", style="cyan")
        out.append(f"\n   why: {why_text(item, (viewed or {}).get(item.id))}", style="dim")
    out.append("\n\nA detached job will run this; it keeps running if the console closes.", style="dim")
    return out


@guard_handlers
class ConfirmApplyScreen(ModalScreen[ApplyRequest | None]):
    """Nothing mutates without this dialog: y answers with the request (as toggled), n or esc with None."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes, apply"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
        Binding("f", "toggle('force')", "Force"),
        Binding("d", "toggle('dry_run')", "Dry-run"),
    ]

    def __init__(self, request: ApplyRequest) -> None:
        super().__init__()
        self.request = request
        self.refusal: str | None = None  # why the plan could not be bound (y is refused then)
        self.viewed = {i.id: i for i in request.items}  # the items as the view showed them (maybe read live)

    def on_mount(self) -> None:
        self.bind_plan()

    @work(exclusive=True, group="bind", exit_on_error=False)
    async def bind_plan(self) -> None:
        """Plan this request afresh and bind it; what the dialog shows is that plan."""
        request = replace(self.request, saved=None)
        self.request, self.refusal = request, None
        self._show()
        app = console_app(self)
        ids = [i.id for i in request.items]

        def plan() -> SavedPlan:
            from unidesk_tui import plan_binding
            from unidesk_tui.planning import run_plan

            run = run_plan(
                app.workspace,
                "plan",
                file=request.manifest_file,
                env=request.environment.key,
                services=ids,
                force=request.force,
                read_live=None if request.environment.named else app.read_live,
            )
            req = PlanRequest(
                file=request.manifest_file, env=request.environment.key, services=ids, force=request.force
            )
            if run.document.errors:
                raise UnideskError.of(
                    ErrorCode.PLAN_INVALID,
                    "; ".join(dict.fromkeys(f"{e.code}: {e.message}" for e in run.document.errors)),
                )
            return plan_binding.bind(run.document, run.catalog, req, app.workspace.root)

        try:
            saved = await in_daemon_thread(plan)
        except UnideskError as exc:
            self.refusal = "; ".join(p.message for p in exc.problems)
            self._show()
            return
        fresh = {i.id: i for i in saved.plan.services}
        items = tuple(fresh.get(i.id, i) for i in request.items)
        if request.force == self.request.force:  # not toggled meanwhile (a new binding is under way)
            self.request = replace(self.request, saved=saved, items=items, document=saved.plan, bound_at=app.clock())
            self._show()

    def _show(self) -> None:
        if self.is_mounted:
            self.query_one("#confirm-text", Static).update(describe(self.request, self.refusal, self.viewed))

    def compose(self) -> ComposeResult:
        request = self.request
        with Vertical(id="confirm-dialog"):
            yield Static(
                Text(
                    f"Apply {plural(len(request.items), 'service')} to "
                    f"{where(request.environment, request.manifest_file)}?",
                    style="bold",
                ),
                id="confirm-title",
            )
            with VerticalScroll(id="confirm-body"):
                yield Static(describe(request, None, self.viewed), id="confirm-text")
            yield Static(
                Text.assemble(
                    ("y", "bold reverse"),
                    " apply   ",
                    ("f", "bold reverse"),
                    " force   ",
                    ("d", "bold reverse"),
                    " dry-run   ",
                    ("n", "bold reverse"),
                    "/",
                    ("esc", "bold reverse"),
                    " cancel",
                ),
                id="confirm-keys",
            )

    def on_resize(self) -> None:
        # The keys line must stay on screen: the body scrolls instead (title, margins, keys, border: 7 rows).
        self.query_one("#confirm-body").styles.max_height = max(3, min(22, self.size.height - 7))

    def action_toggle(self, option: str) -> None:  # type: ignore[override]  # textual's toggles an attribute
        changed: dict[str, Any] = {option: not getattr(self.request, option)}
        self.request = replace(self.request, **changed)
        if option == "force":  # force changes the plan: bind it again
            self.bind_plan()
        else:
            self._show()

    def action_answer(self, yes: bool) -> None:
        if not yes:
            self.dismiss(None)
        elif self.refusal is not None:
            self.app.notify(f"nothing to apply: {self.refusal}", title="Plan not bound", severity="error", timeout=6)
        elif self.request.saved is None:
            self.app.notify("the plan is still being bound; y again in a moment", timeout=3)
        else:
            self.dismiss(self.request)
