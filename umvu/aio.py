"""What a service may await while the caller stays stopped.

A module method declared ``async def`` runs inside the hypervisor's loop; the
tracee that made the call stays stopped until it returns, while every other
tracee goes on.  To do slow blocking work (a network round trip, a big disk
read) without holding up the others, await ``to_thread``; to wait for an
answer another party delivers (a FUSE daemon's reply), await ``Wait`` on a
future or a ``Promise``.

These are requests to the loop (umvu.tracer serves them), kept here so that a
module needs nothing from the engine to make them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import concurrent.futures

T = TypeVar("T")


class _Result:
    """Suspends the handler until the loop sends a result back: raised if it is an exception."""

    __slots__ = ()

    def __await__(self):
        result = yield self
        if isinstance(result, BaseException):
            raise result
        return result


class Offload(_Result):
    """Awaited by a handler: run ``fn(*args)`` in a worker thread.

    The tracee that made the call stays stopped; the loop keeps serving the
    others.  The awaiting coroutine gets fn's result (or its exception).
    """

    __slots__ = ("fn", "args")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args


class Promise:
    """A result delivered in the loop's own thread (a FUSE reply taken at the daemon's stop).

    The part of concurrent.futures.Future that Wait and the fuse module use,
    without its locks and condition: every reply costs one, and the loop is
    the only thread that sets or reads it.  As with the futures umvu passes,
    an exception is delivered as the result (Wait raises it).
    """

    __slots__ = ("_value", "_done", "_callbacks")

    def __init__(self) -> None:
        self._value: Any = None
        self._done = False
        self._callbacks: list[Callable[[Promise], Any]] = []

    def done(self) -> bool:
        return self._done

    def result(self) -> Any:
        return self._value

    def set_result(self, value: Any) -> None:
        self._value, self._done = value, True
        callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn(self)

    def add_done_callback(self, fn: Callable[[Promise], Any]) -> None:
        if self._done:
            fn(self)
        else:
            self._callbacks.append(fn)


class Wait(_Result):
    """Awaited by a handler: suspend until ``future`` is done.

    ``future`` is a concurrent.futures.Future (set by another thread) or a
    Promise (set by the loop).

    For replies that another thread delivers (a FUSE daemon's answer): no
    worker thread waits for it, and a signal ends the wait as for an
    Offload, unless ``interruptible`` is False: then only a fatal signal
    does (SIGKILL; close(2) waiting for FUSE's FLUSH must close the fd
    whatever comes).  ``on_signal(fatal)`` decides instead when given:
    called when a deliverable signal is pending (``fatal``: one the
    process neither catches nor ignores, that kills it), it returns
    whether the wait ends now with EINTR.  It may be called again while
    the signal stays pending.
    """

    __slots__ = ("future", "interruptible", "on_signal")

    def __init__(self, future: concurrent.futures.Future | Promise, interruptible: bool = True,
                 on_signal: Callable[[bool], bool] | None = None) -> None:
        self.future = future
        self.interruptible = interruptible
        self.on_signal = on_signal


async def to_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run ``fn(*args)`` in a worker thread; its result (or exception)."""
    return await Offload(fn, *args)
