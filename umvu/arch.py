"""What differs between CPU architectures: registers and the audit arch id.

The syscall table (syscalls.py) carries a number per architecture; this module
says where a stopped thread keeps its call number, arguments and result.
Only x86_64 is implemented; an aarch64 port adds a Regs class here (it uses
PTRACE_GETREGSET/NT_PRSTATUS and NT_ARM_SYSTEM_CALL) and nothing else changes.
"""

from __future__ import annotations

import ctypes
import os

from umvu import libc


class X86_64Regs(ctypes.Structure):
    """struct user_regs_struct (sys/user.h)."""

    _fields_ = [
        (name, ctypes.c_ulong)
        for name in (
            "r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi "
            "orig_rax rip cs eflags rsp ss fs_base gs_base ds es fs gs"
        ).split()
    ]

    # The six syscall argument registers, in order.
    ARG_NAMES = ("rdi", "rsi", "rdx", "r10", "r8", "r9")

    @property
    def nr(self) -> int:
        return ctypes.c_long(self.orig_rax).value

    @nr.setter
    def nr(self, value: int) -> None:
        self.orig_rax = value & 0xFFFFFFFFFFFFFFFF

    @property
    def ret(self) -> int:
        return ctypes.c_long(self.rax).value

    @ret.setter
    def ret(self, value: int) -> None:
        self.rax = value & 0xFFFFFFFFFFFFFFFF

    def args(self) -> tuple[int, int, int, int, int, int]:
        return (self.rdi, self.rsi, self.rdx, self.r10, self.r8, self.r9)

    def set_arg(self, i: int, value: int) -> None:
        setattr(self, self.ARG_NAMES[i], value & 0xFFFFFFFFFFFFFFFF)

    @property
    def sp(self) -> int:
        return self.rsp

    def rewind_syscall(self, nr: int) -> None:
        """At a syscall-exit stop: make the thread run syscall ``nr`` again.

        ``syscall`` is two bytes long; with rax holding the number, moving the
        instruction pointer back makes the thread execute it once more.
        """
        self.rip -= 2
        self.rax = nr
        self.orig_rax = nr

    def copy(self) -> X86_64Regs:
        return X86_64Regs.from_buffer_copy(self)  # twice per stop: 0.45 us, against 1.3 for pointer assignment


ARCHES = {"x86_64": ("x86_64", 0xC000003E, X86_64Regs), "aarch64": ("aarch64", 0xC00000B7, None)}

try:
    NAME, AUDIT_ARCH, Regs = ARCHES[os.uname().machine]
except KeyError:  # pragma: no cover - depends on the machine
    raise ImportError(f"umvu does not support the {os.uname().machine} architecture yet") from None
if Regs is None:  # pragma: no cover
    raise ImportError(f"umvu's syscall table knows {NAME}, but its register access is not written yet")

# Below the stack pointer the x86_64 ABI reserves 128 bytes (the red zone) that
# a leaf function may use; scratch data we write for a rewritten call goes below.
RED_ZONE = 128


def getregs(tid: int, regs: Regs, ref: object = None) -> None:
    """``ref``: ctypes.byref(regs), when the caller keeps one (a thread's own registers)."""
    libc.ptrace_ptr(libc.PTRACE_GETREGS, tid, regs, ref)


def setregs(tid: int, regs: Regs) -> None:
    libc.ptrace_ptr(libc.PTRACE_SETREGS, tid, regs)
