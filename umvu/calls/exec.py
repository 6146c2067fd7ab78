"""Running and mapping files: execve of a virtual file, mmap and munmap of
virtual fds (a private copy the kernel maps).
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import struct
from typing import Any

from umvu import bpf, devices, memory, syscalls
from umvu.calls.call import (
    AT_FDCWD,
    DONE,
    NR_CLOSE,
    NR_MMAP,
    NR_OPENAT,
    REAL,
    Call,
    family,
    fs_call,
    maybe,
    need,
    s32,
    s64,
)
from umvu.paths import resolve


@family("mmap")
async def fam_mmap(c: Call) -> Any:
    """Map a private host copy of the virtual file (see shadows.py).

    The copy is opened in the tracee in place of the call, mapped with the
    caller's arguments, and closed again.  Writes through a shared writable
    map reach the module when the file's last fd is closed.
    """
    of = c.vfd(4)
    if of is None:
        return REAL
    prot, flags = c.args[2], c.args[3]
    shared_write = flags & 0x3 == 0x1 and prot & 0x2  # MAP_SHARED, PROT_WRITE
    if not of.readable or (shared_write and not of.writable):
        raise OSError(errno.EACCES, "the fd's access mode does not allow this map")
    if of.passthrough is not None and not of.base:
        return REAL  # the placeholder is the disk's file: mapped as a block device maps its pages
    if of.is_dir or isinstance(of.ops, devices.DeviceFile):
        raise OSError(errno.ENODEV, "a directory, or a device whose driver maps nothing")
    st = await maybe(of.ops.fstat(of.handle))
    shadow = await c.hv.shadows.copy_of(of.mount, of.path, st, of.handle)
    if shared_write:
        of.shadow = shadow
    regs = c.regs
    regs.nr = NR_OPENAT
    regs.set_arg(0, AT_FDCWD)
    regs.set_arg(1, c.put_scratch(os.fsencode(shadow) + b"\0"))
    regs.set_arg(2, (os.O_RDWR if shared_write else os.O_RDONLY) | os.O_CLOEXEC)
    regs.set_arg(3, 0)
    fd = await c.t.finish_syscall(regs)
    if fd < 0:
        c.resume_with(fd)
        return DONE
    args = list(c.args[:6])
    args[4] = fd
    ret = await c.t.inject(NR_MMAP, *args)
    await c.t.inject(NR_CLOSE, fd)
    if shared_write and not -4096 < s64(ret) < 0:
        proc = c.t.proc
        of.refs += 1  # the map holds the open file, as a vma does
        proc.maps[ret] = (of, c.args[1])
        if not proc.maps_traced:  # from now on munmap and msync stop in this process
            proc.maps_traced = await c.t.stack_layer(bpf.calls_layer(("munmap", "msync")), "the map filter", c.hv.log)
    return c.ended(ret)


@family("unmap")
async def fam_unmap(c: Call) -> Any:
    """munmap and msync over shared writable maps of private copies: the module gets the data."""
    maps = c.t.proc.maps
    if not maps:
        return REAL
    addr, length = c.args[0], c.args[1]
    for start, (of, size) in list(maps.items()):
        if start < addr + length and addr < start + size:  # overlaps
            if c.sc.name == "msync":
                await c.hv.write_back(of)
            elif addr <= start and start + size <= addr + length:
                del maps[start]
                await c.hv.unmap(of)
            else:
                await c.hv.write_back(of)  # a part: the rest stays mapped
    return REAL


@family("exec")
async def fam_exec(c: Call) -> Any:
    """A file only a module holds runs from a private host copy; a host file behind a view runs as itself; a
    script's or ld.so's interpreter is the one the view names."""
    c.t.exec_view = None
    if c.hv.fast is not None:
        c.hv.fast.keep_marks(c.t)  # the fds opened in the view that the new image inherits
    r = await c.target(intent="exec")
    if r is not None:  # a file only a module holds: the kernel gets a private copy of it
        of = r.of  # fexecve: execveat(fd, "", AT_EMPTY_PATH)
        st = await maybe(of.ops.fstat(of.handle)) if of is not None else need(r)
        c.t.exec_view = r.path
        if not stat_mod.S_ISREG(st.st_mode):
            raise OSError(errno.EACCES, "not a regular file")
        await fs_call(r, "access", os.X_OK)
        c._rewrite(c.sc.path_args[0], c.sc.path_args[0] - 1 if c.sc.name == "execveat" else None,
                   await c.hv.shadows.copy_of(r.mount, r.path, st))
    elif c.handed is not None:
        c.t.exec_view = c.handed[0]
    elif c.rewritten and c.real is not None:
        c.t.exec_view = c.real.path  # a chroot's program: /proc/self/exe names it in the view
    elif not c.rewritten and not c.hv.registry:
        return REAL  # a real file named as the kernel sees it: nothing of the view is involved
    await _exec_interpreter(c)
    return REAL


async def _exec_interpreter(c: Call) -> None:
    """Run a script's or a dynamic binary's interpreter as the view names it.

    The kernel reads "#!/path" and PT_INTERP and opens those paths itself, on
    the host: a script whose interpreter lives in a virtual tree (a venv in a
    cow mount), or any binary in a chroot, would get the host's or none.
    Then the exec becomes one of the interpreter, with the arguments the
    kernel would have made: for "#!" (interp, [arg], file, argv[1:]); for
    ld.so (ld.so, --argv0, argv[0], file, argv[1:]).
    """
    i = c.sc.path_args[0]
    host = os.fsdecode(memory.read_cstring(c.t.tid, c.regs.args()[i]))
    if not host.startswith("/"):  # not rewritten: as the kernel will look it up
        dirfd = s32(c.args[0]) if c.sc.name == "execveat" else AT_FDCWD
        try:
            base = c.cwd() if dirfd == AT_FDCWD else os.readlink(f"/proc/{c.t.tid}/fd/{dirfd}")
        except OSError:
            return
        host = os.path.join(base, host)
    confined = c.t.fs.root != "/"
    try:
        with open(host, "rb") as f:
            head = f.read(4096)
    except OSError:
        return  # the kernel will say why
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].strip()
        if not line:
            return
        parts = line.split(None, 1)
        interp, extra = os.fsdecode(parts[0]), [parts[1]] if len(parts) > 1 else []
        ld_style = False
    elif head.startswith(b"\x7fELF") and confined:
        interp = _pt_interp(host)
        if interp is None:
            return
        extra, ld_style = [], True
    else:
        return
    t = c.t
    try:
        ri = await resolve(c.hv.registry, c.cwd(), interp, True, t.fs.root, c._magic)
    except OSError:
        return
    if ri.st is None:
        return
    if ri.mount is None:
        if ri.path == interp and not confined:
            return  # the host finds the same interpreter
        interp_host = ri.path
    else:
        interp_host = await maybe(ri.mount.fs.host_path(ri.mount.inner(ri.path), "exec", ri.st))
        if interp_host is None:
            interp_host = await c.hv.shadows.copy_of(ri.mount, ri.path, ri.st)
    argv_addr = c.args[i + 1]
    old = memory.read_pointers(t.tid, argv_addr) if argv_addr else []
    # The name as the caller wrote it (the interpreter opens it in the view), unless it is
    # relative to a dirfd (execveat) that the interpreter would not know.
    file_ptr = c.args[i]
    if c.sc.name == "execveat" and not c.read_str(i).startswith("/"):
        file_ptr = c.put_scratch(os.fsencode(c.t.exec_view or host) + b"\0")
    if ld_style:
        new = [c.put_scratch(os.fsencode(interp_host) + b"\0"), c.put_scratch(b"--argv0\0"),
               old[0] if old else c.put_scratch(b"\0"), file_ptr, *old[1:]]
    else:
        new = [c.put_scratch(os.fsencode(interp) + b"\0"),
               *[c.put_scratch(x + b"\0") for x in extra], file_ptr, *old[1:]]
    array = c.put_scratch(struct.pack(f"<{len(new) + 1}Q", *new, 0))
    regs = c.regs
    if c.sc.name == "execveat":
        envp = c.args[3]
        regs.nr = syscalls.BY_NAME["execve"].nr
        regs.set_arg(2, envp)
    regs.set_arg(0, c.put_scratch(os.fsencode(interp_host) + b"\0"))
    regs.set_arg(1, array)
    c.rewritten = True


def _pt_interp(path: str) -> str | None:
    """The ELF program interpreter (PT_INTERP) of a 64-bit little-endian binary."""
    try:
        with open(path, "rb") as f:
            ehdr = f.read(64)
            if len(ehdr) < 64 or ehdr[4] != 2:
                return None
            phoff, = struct.unpack_from("<Q", ehdr, 32)
            phentsize, phnum = struct.unpack_from("<HH", ehdr, 54)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
            for k in range(phnum):
                p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", table, k * phentsize)
                if p_type == 3:  # PT_INTERP
                    f.seek(p_offset)
                    return os.fsdecode(f.read(p_filesz).rstrip(b"\0"))
    except (OSError, struct.error):
        return None
    return None
