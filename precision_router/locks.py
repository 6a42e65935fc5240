"""A lock that survives pickling: routers and encoders travel to rollout workers (Ray objects)."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["PicklableLock"]


class PicklableLock:
    """A ``threading.Lock`` (or ``RLock`` with ``reentrant=True``) that unpickles as a fresh, unlocked one.

    Objects holding one can be sent to other processes (``pickle``, Ray's object store); the
    copy gets its own lock, as a lock only ever guards one process's threads.
    """

    def __init__(self, reentrant: bool = False) -> None:
        self.reentrant = reentrant
        self._lock: Any = threading.RLock() if reentrant else threading.Lock()

    def __reduce__(self) -> tuple[Any, tuple[bool]]:
        return (PicklableLock, (self.reentrant,))

    def __enter__(self) -> bool:
        return bool(self._lock.acquire())

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def __repr__(self) -> str:
        return f"PicklableLock(reentrant={self.reentrant})"
