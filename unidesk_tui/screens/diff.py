"""What a deploy of one service would change: the commit range running..desired (subject, author),
the files changed, and for k3s services the rendered manifest against the live objects."""

from __future__ import annotations

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import Worker

from unidesk_tui.changes import CommitRange, commit_range
from unidesk_tui.documents import PlanItem
from unidesk_tui.manifest_diff import ManifestDiff, manifest_diff
from unidesk_tui.model import Environment
from unidesk_tui.screens.typed_app import console_app
from unidesk_tui.widgets.daemon import in_daemon_thread
from unidesk_tui.widgets.guard import guard_handlers
from unidesk_tui.widgets.present import PLAIN, Palette, short


def range_text(item: PlanItem, changes: CommitRange, palette: Palette = PLAIN) -> Text:
    out = Text()
    out.append("running ", style="dim")
    out.append(
        short(changes.running, 12),
        style=palette.style("bold $warning") if changes.running != changes.desired else "bold",
    )
    out.append("  →  desired ", style="dim")
    out.append(short(changes.desired, 12), style="bold")
    out.append(f"   {item.repo or ''}\n", style="dim")
    if changes.note:
        out.append(f"{changes.note}\n", style="italic")
    out.append(f"\nCommits the deploy brings ({len(changes.forward)})\n", style="bold underline")
    for c in changes.forward:
        out.append("+ ", style=palette.style("$success"))
        out.append(f"{c.sha[:12]} ", style=palette.style("$primary"))
        out.append(c.subject)
        out.append(f"  — {c.author}, {c.date}\n", style="dim")
    if not changes.forward:
        out.append("none\n", style="dim")
    if changes.backward:
        out.append(f"\nCommits it takes away ({len(changes.backward)})\n", style="bold underline")
        for c in changes.backward:
            out.append("- ", style=palette.style("$error"))
            out.append(f"{c.sha[:12]} ", style=palette.style("$primary"))
            out.append(c.subject)
            out.append(f"  — {c.author}, {c.date}\n", style="dim")
    out.append(f"\nFiles changed ({len(changes.files)})\n", style="bold underline")
    for f in changes.files:
        if f.added is None:
            out.append("   bin  ", style="dim")
        else:
            out.append(f"{'+' + str(f.added):>6}", style=palette.style("$success"))
            out.append(f" {'-' + str(f.removed):<6}", style=palette.style("$error"))
        out.append(f" {f.path}\n")
    if not changes.files:
        out.append("none\n", style="dim")
    return out


def manifest_text(diff: ManifestDiff, palette: Palette = PLAIN) -> Text:
    out = Text()
    out.append(f"\nManifest {diff.manifest or ''} rendered, against the live objects\n", style="bold underline")
    if diff.note:
        out.append(f"{diff.note}\n", style="italic")
    for obj in diff.objects:
        out.append(f"\n{obj.kind} {obj.namespace}/{obj.name}  ", style="bold")
        if obj.live_missing:
            out.append("not in the cluster: the deploy creates it\n", style=palette.style("$warning"))
        elif not obj.diff:
            out.append("no change\n", style=palette.style("$success"))
        else:
            out.append("\n")
        for line in obj.diff:
            if diff.note and not obj.live_missing:  # live side unknown: the render, unmarked
                out.append(f"  {line[1:]}\n", style="dim")
            elif line.startswith(("---", "+++", "@@")):
                out.append(f"{line}\n", style="dim")
            elif line.startswith("+"):
                out.append(f"{line}\n", style=palette.style("$success"))
            elif line.startswith("-"):
                out.append(f"{line}\n", style=palette.style("$error"))
            else:
                out.append(f"{line}\n")
    return out


@guard_handlers
class DiffScreen(Screen[None]):
    """Read-only; esc goes back."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("y", "yank", "Copy desired SHA"),
    ]

    def __init__(self, item: PlanItem, environment: Environment) -> None:
        super().__init__()
        self.item = item
        self.environment = environment
        self.changes: CommitRange | None = None
        self.manifest: ManifestDiff | None = None

    def compose(self) -> ComposeResult:
        where = self.environment if self.environment.named else "local deploy.json"
        yield Static(
            Text.assemble(
                (f" Diff {self.item.id} ", "bold reverse"),
                f"  {where} · {self.item.mode or '?'} on {self.item.target or '?'}",
            ),
            id="diff-title",
        )
        with VerticalScroll(id="diff-body"):
            yield Static(Text("reading the commit range from the local mirror…", style="dim"), id="diff-range")
            yield Static(id="diff-manifest")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#diff-manifest").display = False
        self.load()

    @work(group="diff", exit_on_error=False)
    async def load(self) -> None:
        item = self.item
        running = item.live.commit if item.live else None
        self.changes = await in_daemon_thread(
            commit_range, console_app(self).workspace.state_dir, item.repo, running, item.commit
        )
        self.query_one("#diff-range", Static).update(range_text(item, self.changes, Palette.of(self.app)))
        if item.mode == "k3sctl-managed" and self.environment != Environment.PROD:
            await self._load_manifest()

    async def _load_manifest(self) -> None:
        box = self.query_one("#diff-manifest", Static)
        box.display = True
        box.update(Text("\nrendering the manifest and reading the live objects…", style="dim"))
        self.manifest = await in_daemon_thread(
            manifest_diff, console_app(self).workspace, self.item.id, self.environment.key
        )
        box.update(manifest_text(self.manifest, Palette.of(self.app)))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        console_app(self).report_worker(event)

    def action_yank(self) -> None:
        if self.item.commit:
            console_app(self).yank(self.item.commit)
