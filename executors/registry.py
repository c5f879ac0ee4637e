"""The built-in executors, registered by `deployment.mode` on import (see executors.base.executor_for)."""

from __future__ import annotations

import logging

from executors import compose, k3s, prewarm  # noqa: F401  (importing registers them)
from executors.base import _REGISTRY

log = logging.getLogger(__name__)

MODES: tuple[str, ...] = tuple(sorted(_REGISTRY))
