"""A UniDesk workspace on the operator's side: its root, config.json, deploy.json and state dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from unidesk_tui.catalog import Catalog


class Workspace(NamedTuple):  # not a dataclass: `job status` starts without loading dataclasses
    root: Path
    state_dir: Path

    @classmethod
    def at(cls, root: str | Path | None = None, state_dir: str | Path | None = None) -> Workspace:
        root = Path(root or os.getcwd()).resolve()
        state = state_dir or os.environ.get("UNIDESK_STATE_DIR") or root / ".state"
        return cls(root, Path(state).resolve())

    def ensure_state_dir(self) -> None:
        """Create the state dir and prove it writable; an unusable one is a coded error, not a traceback later."""
        from unidesk_tui.errors import ErrorCode, UnideskError

        probe = self.state_dir / f".probe-{os.getpid()}"
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            probe.mkdir()  # os.access says yes to root even where mkdir fails (e.g. under /proc)
            probe.rmdir()
        except OSError as exc:
            # mkdir says "File exists" or "Not a directory" and names neither path: say which one
            blocking = next((p for p in (self.state_dir, *self.state_dir.parents) if p.exists()), None)
            if blocking is not None and not blocking.is_dir():
                reason = f"{blocking} is not a directory"
            else:
                reason = exc.strerror or type(exc).__name__
            raise UnideskError.of(
                ErrorCode.STATE_DIR_INVALID,
                f"state dir {self.state_dir} is unusable: {reason}; pass --state-dir a writable directory",
                path="--state-dir",
            ) from None

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "deploy.json"

    def catalog(self) -> Catalog:
        from unidesk_tui.catalog import load_catalog  # pydantic models: only commands that read config.json

        return load_catalog(self.config_path)
