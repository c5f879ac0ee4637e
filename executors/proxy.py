"""The one-shot build proxy: which egress a target's fetch and build use, and the probe before them.

Provider targets reach the outside only through their node-local provider-gateway egress proxy;
main-server targets go direct unless the service requires a proxy. The proxy is passed to one
command at a time (an `env` prefix) and to the build as matching `--build-arg`s; nothing
host-global changes. A failed probe fails the job: there is no fallback to direct network. An
HTTP(S) proxy carries only http(s) repositories, so a proxied fetch of an ssh/git/file URL (which
would silently go direct) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from unidesk_tui.catalog import Target
from unidesk_tui.errors import ErrorCode, UnideskError
from unidesk_tui.identifiers import is_repo_url
from unidesk_tui.redact import redact_url

CHANNEL = "provider-gateway-ws-egress"
PROBE_TIMEOUT = 30.0
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


@dataclass(frozen=True)
class ProxyScope:
    """The egress of one deploy step: a proxy URL, or direct (None)."""

    url: str | None

    @property
    def direct(self) -> bool:
        return self.url is None

    def describe(self) -> str:
        """What the job log shows, credentials removed."""
        return "direct" if self.url is None else f"{CHANNEL}:{redact_url(self.url)}"

    def env(self) -> dict[str, str]:
        """Variables for exactly one remote command (passed as an `env` prefix)."""
        return {} if self.url is None else {name: self.url for name in PROXY_VARS}

    def build_args(self) -> list[str]:
        """The same values as `--build-arg`s for Dockerfile RUN steps."""
        out: list[str] = []
        for name, value in self.env().items():
            out += ["--build-arg", f"{name}={value}"]
        return out


def scope_for(target: Target, requires_proxy: bool) -> ProxyScope:
    """Providers always use their egress proxy; the main server only when the service says so."""
    need = target.role == "provider" or requires_proxy
    if not need:
        return ProxyScope(None)
    if not target.egressProxy:
        why = "a provider target" if target.role == "provider" else "the service requires a proxy"
        raise UnideskError.of(
            ErrorCode.PROXY_PROBE_FAILED,
            f"target {target.id} has no egressProxy configured but {why}; refusing to fall back to direct network",
        )
    return ProxyScope(target.egressProxy)


def check_repo_for_scope(repo: str, scope: ProxyScope, target_id: str, service: str | None = None) -> None:
    """Through a proxy only http(s) repositories: git would fetch anything else directly."""
    if scope.direct:
        return
    scheme = urlsplit(repo).scheme.lower() if "://" in repo else ""
    if scheme not in ("http", "https"):
        raise UnideskError.of(
            ErrorCode.PROXY_PROBE_FAILED,
            f"{target_id}: repository {redact_url(repo)!r} is not http(s); the egress proxy cannot carry it and a "
            "direct fetch is refused",
            service=service,
        )


def probe_argv(repo: str) -> list[str]:
    """Reach the repository host through the proxy: `git ls-remote` of HEAD only."""
    if not is_repo_url(repo):
        raise UnideskError.of(ErrorCode.INVALID_VALUE, f"refusing repository URL {redact_url(repo)!r}")
    return ["git", "-c", "credential.interactive=never", "ls-remote", "--exit-code", "--", repo, "HEAD"]


async def probe_step(ctx) -> None:
    """Log the proxy channel, probe it, fail the job when it does not work."""
    ms = ctx.service.microservice
    try:
        scope = scope_for(ctx.target, bool(ms and ms.build and ms.build.requiresProxy))
    except UnideskError:
        ctx.emit("target_build_proxy_probe=failed", "stderr")
        raise
    ctx.shared["proxy"] = scope
    ctx.emit(f"target_source_proxy={scope.describe()}")
    ctx.emit(f"target_build_proxy={scope.describe()}")
    if scope.direct:
        ctx.emit(
            f"target_build_proxy_probe=skipped (target {ctx.target.id} is the main server; service does not require "
            "a proxy)"
        )
        return
    try:
        check_repo_for_scope(ctx.service.repo, scope, ctx.target.id, ctx.service.id)
    except UnideskError:
        ctx.emit("target_build_proxy_probe=failed", "stderr")
        raise
    session = await ctx.session()
    res = await session.run(
        probe_argv(ctx.service.repo), env={**scope.env(), "GIT_TERMINAL_PROMPT": "0"}, timeout=PROBE_TIMEOUT
    )
    if not res.ok:
        ctx.emit("target_build_proxy_probe=failed", "stderr")
        why = "timed out" if res.timed_out else res.tail(300)
        raise UnideskError.of(
            ErrorCode.PROXY_PROBE_FAILED,
            f"{ctx.target.id}: egress proxy probe through {scope.describe()} failed: {redact_url(why)}",
            service=ctx.service.id,
        )
    ctx.emit("target_build_proxy_probe=ok")
