"""A UniDesk workspace on the operator's side: its root, config.json, deploy.json and state dir."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from unidesk_tui.catalog import Catalog


@dataclass(frozen=True)
class Workspace:
    root: Path
    state_dir: Path

    @classmethod
    def at(cls, root: str | Path | None = None, state_dir: str | Path | None = None) -> Workspace:
        root = Path(root or os.getcwd()).resolve()
        state = state_dir or os.environ.get("UNIDESK_STATE_DIR") or root / ".state"
        return cls(root, Path(state).resolve())

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "deploy.json"

    def catalog(self) -> Catalog:
        from unidesk_tui.catalog import load_catalog  # pydantic models: only commands that read config.json

        return load_catalog(self.config_path)
