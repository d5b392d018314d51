"""The seed's defaults, in a module that imports nothing: `tasks.py` shows them in --help."""

from __future__ import annotations

DEFAULT_SEED = 2024
DEFAULT_SCALE = 1
DEFAULT_BACKGROUND = 100_000  # closed authorizations: a realistic table volume
DEFAULT_TOKEN_TTL_S = 86_400
