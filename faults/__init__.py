"""Network faults made in user space: a relay in front of PostgreSQL (this kernel has no netem)."""

from __future__ import annotations

from faults.relay import DbRelay, RelayError, RelayStats, Upstream

__all__ = ["DbRelay", "RelayError", "RelayStats", "Upstream"]
