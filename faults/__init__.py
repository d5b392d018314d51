"""Faults a run injects: the nemesis that plays a profile's fault schedule (nemesis), and the
relay in front of PostgreSQL that makes network faults in user space (relay; this kernel has
no netem)."""

from __future__ import annotations

from faults.relay import DbRelay, RelayError, RelayStats, Upstream

__all__ = ["DbRelay", "RelayError", "RelayStats", "Upstream"]
