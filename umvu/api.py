"""What a module author needs, in one place: ``from umvu.api import ...``.

Everything here is a contract the core keeps: the hook marker, the service
base classes (a file system, a device driver, an inode-numbered file system
for FUSE-like services), the records they return, the caller's credentials
and the permission rules, and what an async method may await.  Nothing here
imports the engine (tracer, memory, filter), the handlers or the
hypervisor (``make lint`` checks it): a module written against this
namespace does not depend on how calls are intercepted.

The hooks themselves are documented in umvu.hookspecs; the ``vu`` object
they receive (umvu.modules.ModuleContext) mounts, claims device numbers and
keeps per-process state.
"""

from umvu.abi import (
    StatFs,
    dtype_of,
    dtype_of_entry,
    fallocate,
    host_statfs,
    link_fd,
    long_path,
    renameat2,
    short_path,
    take_fd,
)
from umvu.aio import Promise, Wait, to_thread
from umvu.creds import MAY_EXEC, MAY_READ, MAY_WRITE, Creds, as_caller, as_session, check_delete, current, permitted
from umvu.devices import NodeFS, SyntheticTree
from umvu.hookspecs import hookimpl
from umvu.inodefs import DirItem, Entry, InodeFS, NodeOps, Opened, SetAttr, make_stat
from umvu.ioctls import NR as IOCTL
from umvu.vfs import CallService, Connect, Device, DirEntry, FileSystem, HostFdFiles, HostFdLocks

__all__ = [
    # hooks
    "hookimpl",
    # services: a tree of files, a driver chosen by device number, a tree served by inode numbers,
    # calls chosen by number or address family
    "FileSystem", "Device", "InodeFS", "NodeOps", "CallService",
    # what they return and take
    "DirEntry", "StatFs", "Connect", "Entry", "DirItem", "Opened", "SetAttr", "make_stat",
    "dtype_of", "dtype_of_entry",
    # ready-made trees: one device node, a tree of generated text files
    "NodeFS", "SyntheticTree",
    # host files on the caller's behalf
    "HostFdFiles", "HostFdLocks", "host_statfs", "renameat2", "fallocate", "link_fd", "short_path", "long_path",
    # another process's fd (a module's helper)
    "take_fd",
    # whose call it is, and the kernel's permission rules
    "Creds", "current", "as_caller", "as_session", "permitted", "check_delete", "MAY_READ", "MAY_WRITE", "MAY_EXEC",
    # waiting without holding up other processes
    "to_thread", "Wait", "Promise",
    # ioctl request numbers by name (umvu.ioctls)
    "IOCTL",
]
