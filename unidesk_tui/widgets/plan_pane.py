"""The plan pane: staged services with their planned action and reason (force and dry-run are
chosen in the confirmation dialog, so nothing here is a hidden mode)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from unidesk_tui.documents import PlanItem
from unidesk_tui.model import Environment
from unidesk_tui.widgets.present import ACTIONS, Palette, labelled, short

PROD_DISABLED_REASON = (
    "prod_apply_disabled: deploy apply --env prod is disabled until a production executor and "
    "authorization policy exist"
)


def apply_blocker(environment: Environment, items: list[PlanItem], enabled: set[str] | None) -> str | None:
    """Why an apply of `items` would be refused before any confirmation, or None."""
    if environment == Environment.PROD:
        return PROD_DISABLED_REASON
    if not items:
        return "nothing staged: press space on a service"
    if environment == Environment.DEV:
        outside = [i.id for i in items if not i.applyEnabled]
        if outside:
            slice_ = ", ".join(sorted(enabled or ())) or "none"
            return f"outside the enabled dev slice ({slice_}): {', '.join(outside)} (service_not_enabled)"
    bad = [i for i in items if i.action in ("error", "unsupported")]
    if bad:
        return "; ".join(f"{i.id}: {i.action}: {i.reason}" for i in bad)
    return None


class PlanPane(Static):
    """Lists what `a` would apply; shows why apply is disabled when it is."""

    #: Staged plan items, in staging order.
    items: reactive[list[PlanItem]] = reactive(list, always_update=True, layout=True)
    #: The environment the plan is for (file: the local deploy.json).
    environment: reactive[Environment] = reactive(Environment.FILE, layout=True)
    #: Environment apply slice (dev) or None when not in environment mode.
    enabled: reactive[set[str] | None] = reactive(None, always_update=True)

    def render(self) -> Text:
        palette = Palette.of(self.app)
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append("PLAN ", style="bold")
        out.append(f"({len(self.items)} staged)  ")
        blocker = apply_blocker(self.environment, self.items, self.enabled)
        if self.environment == Environment.PROD:
            out.append("⊘ apply disabled in prod", style=palette.style("bold $error"))
            out.append("\n ⊘ " + PROD_DISABLED_REASON, style=palette.style("$error"))
        elif blocker and self.items:
            out.append("⊘ refused", style=palette.style("bold $error"))
            out.append("\n ⊘ " + blocker, style=palette.style("$error"))
        elif self.items:
            out.append(
                "a: apply (the dialog offers force and dry-run) · x: unstage all", style=palette.style("$success")
            )
        for item in self.items:
            out.append("\n ")
            out.append(labelled(ACTIONS, item.action, palette=palette))
            out.append(f"  {item.id}", style="bold")
            out.append(f"  {short(item.commit or item.requestedCommit, 12)} → {item.target or '?'}  ")
            out.append(item.reason, style="dim")
        if not self.items:
            out.append("\n space stages the selected service (+ all drifted); staged rows are marked ●", style="dim")
        return out
