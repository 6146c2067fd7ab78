"""Fault injection for the robustness tests: a real SIGKILL at a chosen kind of stop.

Killing a process from outside lands wherever timing puts it; the tests need
every kind of stop covered, thousands of times.  With ``UMVU_FAULTS`` set,
the tracer itself sends SIGKILL to a traced process at the moment one of its
threads reports a stop of a chosen kind, and then serves that report as usual:
the hypervisor meets the vanished thread exactly where a kill from outside
would have found it (tests/test_faults.py, ``make faults``).

    UMVU_FAULTS="rate=0.02,seed=7,victims=victim,at=entry:0.002+mid+wait:0.1+exec+fork+newborn+signal+group"

``victims``: only processes whose name (/proc/PID/comm) starts with this are
killed, so the rest of the session can be checked for correct results.
``at``: the kinds of stop (KINDS), each with its own chance of a kill
(``kind:P``) or ``rate``'s: a victim makes far more call entries than
execs, and would seldom live to reach the rarer stops.  At the end of the
session the log gets a line with what was injected, by kind.  Without the
variable none of this runs.
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from umvu.tracer import Tracee

KINDS = {
    "entry": "a system call's seccomp stop, before it is served",
    "mid": "a further stop of a handler that needs several (an open's placeholder, an injected call)",
    "wait": "a handler waiting for a module's worker thread or a FUSE daemon's reply",
    "exec": "the exec event",
    "fork": "the parent's fork, vfork or clone event",
    "newborn": "a new child's first stop",
    "signal": "a signal-delivery stop",
    "group": "a group stop (SIGSTOP, SIGTSTP...)",
}


class Faults:
    def __init__(self, spec: str) -> None:
        fields = dict(part.partition("=")[::2] for part in spec.split(",") if part)
        unknown = set(fields) - {"rate", "seed", "victims", "at"}
        if unknown:
            raise ValueError(f"UMVU_FAULTS: unknown field {sorted(unknown)[0]!r}")
        rate = float(fields.get("rate", "0.01"))
        import random  # here: a session with no faults does not pay for it at start-up

        self.random = random.Random(int(fields.get("seed", "0")))
        self.prefix = fields.get("victims", "victim")
        self.rates: dict[str, float] = {}
        for item in fields.get("at", "+".join(KINDS)).split("+"):
            kind, _, p = item.partition(":")
            if kind not in KINDS:
                raise ValueError(f"UMVU_FAULTS: unknown kind {kind!r}")
            self.rates[kind] = float(p) if p else rate
        self.injected: Counter[str] = Counter()
        self._victim: dict[int, bool] = {}  # tid -> its name is a victim's (forgotten at exec)

    @classmethod
    def from_environment(cls) -> Faults | None:
        spec = os.environ.get("UMVU_FAULTS")
        return cls(spec) if spec else None

    def _is_victim(self, tid: int) -> bool:
        known = self._victim.get(tid)
        if known is None:
            try:
                with open(f"/proc/{tid}/comm") as f:
                    known = f.read().startswith(self.prefix)
            except OSError:
                known = False
            self._victim[tid] = known
        return known

    def maybe_kill(self, tid: int, kind: str) -> None:
        rate = self.rates.get(kind)
        if rate and self._is_victim(tid) and self.random.random() < rate:
            try:
                os.kill(tid, signal.SIGKILL)
            except ProcessLookupError:
                return
            self.injected[kind] += 1

    def forget(self, tid: int) -> None:
        """``tid`` ended without a report of its own (an exec by another thread takes the leader's):
        a process that gets it next is asked its name afresh."""
        self._victim.pop(tid, None)

    def at_report(self, t: Tracee | None, tid: int, status: int, kind: str | None) -> None:
        if kind in ("exec", "newborn") or not os.WIFSTOPPED(status):
            # a new program, a tid used again, or the end: once the tid is free, a fork of the
            # driver's shell may get it, and must not be taken for a victim
            self._victim.pop(tid, None)
        if kind is not None:
            self.maybe_kill(tid, kind)

    def summary(self) -> str:
        total = sum(self.injected.values())
        by_kind = " ".join(f"{k}={self.injected[k]}" for k in KINDS if self.injected[k])
        return f"faults: {total} SIGKILLs injected{': ' + by_kind if by_kind else ''}"
