"""The console header: workspace, environment, provenance, and the last refresh's time and cost."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from unidesk_tui.documents import EnvSourceDoc, FileSourceDoc, PlanDocument
from unidesk_tui.model import Environment
from unidesk_tui.widgets.present import Palette, clock_text, duration_text


class StatusHeader(Static):
    """Four lines: where we are, what the manifest is, and how fresh the grid is."""

    #: Workspace shown (its directory name; the full path is in the palette and help).
    workspace: reactive[str] = reactive("")
    #: The environment being viewed: file (the local deploy.json), dev or prod.
    environment: reactive[Environment] = reactive(Environment.FILE)
    #: The document the grid shows (None before anything was read).
    document: reactive[PlanDocument | None] = reactive(None)
    #: Epoch seconds of the refresh that produced `document`.
    refreshed_at: reactive[float | None] = reactive(None)
    #: How long that refresh took, in seconds.
    duration_s: reactive[float | None] = reactive(None)
    #: True while `document` comes from the cache and no refresh has finished yet.
    stale: reactive[bool] = reactive(False)
    #: Targets of the refresh in flight that have not answered yet (their rows still show the cache).
    waiting: reactive[tuple[str, ...]] = reactive(())
    #: True while a refresh runs in the background.
    refreshing: reactive[bool] = reactive(False)

    def render(self) -> Text:
        out = Text()
        out.append(" UniDesk ", style="bold reverse")
        out.append(f"  {self.workspace}  ", style="bold")
        out.append(" env ")
        palette = Palette.of(self.app)
        for number, env in enumerate(Environment, start=1):  # the keys 1, 2, 3 choose them
            if env == self.environment:
                out.append(
                    f" {number}:{env} ",
                    style=palette.style("bold reverse $error") if env == Environment.PROD else "bold reverse",
                )
            else:
                out.append(f" {number}:{env} ", style="dim")
        out.append("\n")
        out.append(self._provenance())
        out.append("\n")
        out.append(self._freshness())
        return out

    def _provenance(self) -> Text:
        doc = self.document
        line = Text(" ")
        source = doc.source if doc else None
        if isinstance(source, EnvSourceDoc):
            line.append(f"{source.ref}", style="bold")
            line.append(f" @ {source.manifestCommit[:12]}  blob {source.manifestBlob[:12]}")
        elif isinstance(source, FileSourceDoc):
            line.append("file ", style="dim")
            line.append(source.path.rsplit("/", 1)[-1], style="bold")
            line.append("  (local working tree)", style="dim")
        else:
            line.append("no manifest read yet", style="dim")
        line.append("\n ")
        if doc and doc.environment:
            e = doc.environment
            # `--live`-style plans carry each item's live state; without one it is the spec's dry-run plan.
            read = any(i.live is not None and i.live.state != "unsupported" for i in doc.services)
            line.append("environment plan, runtime read live: " if read else "dry-run environment plan: ", style="dim")
            line.append(
                f"namespace {e.namespace} · provider {e.providerId} · target {e.target} · database {e.databaseName} "
                f"#{e.databaseFingerprint}",
                style=Palette.of(self.app).style("$primary"),
            )
        elif doc and isinstance(source, FileSourceDoc):
            line.append("live runtime read from each target over SSH", style="dim")
        return line

    def _freshness(self) -> Text:
        palette = Palette.of(self.app)
        line = Text(" ")
        if self.refreshed_at is None:
            line.append("not refreshed yet", style="dim")
        else:
            line.append(f"refreshed {clock_text(self.refreshed_at)} in {duration_text(self.duration_s)}")
            if self.waiting:  # the other hosts' rows are already fresh: name the ones still cached
                line.append(f"  waiting: {', '.join(self.waiting)}", style=palette.style("bold $warning"))
            elif self.stale:
                line.append("  STALE (cached)", style=palette.style("bold $warning"))
        if self.refreshing:
            line.append("  ⟳ refreshing…", style=palette.style("$primary"))
        doc = self.document
        if doc is not None:
            down: dict[str, int] = {}
            for item in doc.services:
                if item.live is not None and item.live.state in ("unreachable", "runtime-unreachable"):
                    down[item.target or "?"] = down.get(item.target or "?", 0) + 1
            if down:
                line.append(
                    "  ⊘ unreachable: " + ", ".join(f"{t} ({n})" for t, n in sorted(down.items())),
                    style=palette.style("bold $error"),
                )
            general = [e for e in doc.errors if not e.service]
            if general:
                line.append(f"  ✗ {general[0].code}: {general[0].message}", style=palette.style("bold $error"))
            elif doc.warnings:
                line.append(f"  ⚠ {doc.warnings[0]}", style=palette.style("$warning"))
        return line
