"""Command palette providers, one per domain: services (jump to a row) and jobs (open a log)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from unidesk_tui.screens.typed_app import console_app
from unidesk_tui.widgets.present import row_state


class ServicesProvider(Provider):
    """`service <id>`: select it in the grid and open its detail."""

    def _entries(self) -> list[tuple[str, str, str]]:
        main = console_app(self).main_screen
        doc = main.document if main else None
        if main is None or doc is None:
            return []
        env_mode = main.environment.named
        return [
            (
                item.id,
                f"service {item.id}",
                f"{row_state(item, env_mode)} · {item.target or '?'} · {item.action}: {item.reason}",
            )
            for item in doc.services
        ]

    async def discover(self) -> Hits:
        for sid, text, help_ in self._entries():
            yield DiscoveryHit(text, partial(console_app(self).jump_to_service, sid), help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for sid, text, help_ in self._entries():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(console_app(self).jump_to_service, sid), help=help_)


class JobsProvider(Provider):
    """`job <id>`: open that job's log (running jobs reattach and stream)."""

    def _entries(self) -> list[tuple[str, str, str]]:
        return [
            (job.id, f"job {job.id} {job.status}", f"{job.environment} · {', '.join(job.services)}")
            for job in console_app(self).jobs
        ]

    async def discover(self) -> Hits:
        yield DiscoveryHit("jobs: list all jobs", console_app(self).action_show_jobs, help="the jobs screen")
        for jid, text, help_ in self._entries()[:20]:
            yield DiscoveryHit(text, partial(console_app(self).open_job, jid), help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for jid, text, help_ in self._entries():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(console_app(self).open_job, jid), help=help_)
