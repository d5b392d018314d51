"""A daemon thread that runs for as long as a ``with`` block lasts: the watchers' lifecycle.

The service watch, the CPU watch, the attribution sampler and the nemesis each loop in a thread
beside the load, until their block ends. Each sets up before its thread starts
(``_before_start``) and gathers its last figures once it has stopped (``_after_stop``); the
thread's loop waits on ``_stop`` so that the end of the block cuts its pause short.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Self


class BackgroundThread:
    """Start ``loop`` in a daemon thread on entering the block; stop and join it on leaving."""

    def _init_thread(
        self, loop: Callable[[], None], name: str, *, join_timeout_s: float | None = None
    ) -> None:
        """Set the thread up (from the subclass's __init__ or __post_init__)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=loop, name=name, daemon=True)
        self._join_timeout_s = join_timeout_s  # None: wait for the loop however long it takes

    def _before_start(self) -> None:
        """Take the first look before the thread starts."""

    def _after_stop(self) -> None:
        """Take the last look once the thread has stopped."""

    def __enter__(self) -> Self:
        self._before_start()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self._join_timeout_s)
        self._after_stop()
