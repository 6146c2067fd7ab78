"""What an async module method may await.

A module method declared ``async def`` runs inside the hypervisor's loop; the
tracee that made the call stays stopped until it returns, while every other
tracee goes on.  To do slow blocking work (a network round trip, a big
disk read) without holding up the others, await ``to_thread``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from umvu.tracer import Offload

T = TypeVar("T")


async def to_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread; its result (or exception)."""
    return await Offload(fn, *args)
