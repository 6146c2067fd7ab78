"""The syscall table: the one place that says what shape each call has.

Everything else is derived from it: the seccomp filter (which calls stop at
all), the per-fd filter layers (which calls stop for a virtual fd), argument
decoding in the dispatcher, and the debug log's formatting.  Adding a call is
adding a line (VUOS keeps the same fact in vu_syscalls.conf, gVisor in
linux64.go).

Columns: name, x86_64 number, aarch64 number (- where the call does not exist),
argument kinds, family (the handler in dispatch.py that serves the call when
it is virtual).

Argument kinds:
  path   a path whose last component is followed if it is a symlink
  lpath  a path whose last component is not followed (lstat, readlink, lchown...); a trailing
         slash makes the kernel follow it all the same ("link/" is the directory)
  npath  a name the call makes or removes (mkdir, unlink, rename, the new name of link...): its
         last component is never followed, whatever slashes come after it
  apath  followed unless the call's ``atflags`` has AT_SYMLINK_NOFOLLOW;
         with AT_EMPTY_PATH and "" it names the ``dirfd`` itself
  fpath  not followed unless ``atflags`` has AT_SYMLINK_FOLLOW (linkat)
  opath  followed unless ``oflags`` has O_NOFOLLOW, or O_CREAT|O_EXCL
  dirfd  the directory a following relative path is looked up from
  fd     a file descriptor (a virtual one makes the call stop: see bpf.py)
  atflags, oflags   the flags that decide the above
  str    a string that is not looked up (a symlink's target)
  ubind  a socket address (its length the next argument) whose AF_UNIX path names the socket
         the call makes (bind: never followed)
  uaddr  a socket address whose AF_UNIX path names a socket to reach (connect, sendto: followed)
  anything else (int, ptr, size, mode, ...) is a plain value, named for the log

A call stops in the base filter when its family is in ALWAYS_TRACED, or when
it has a path or socket-address argument (a NULL address does not stop) or
its family is in MOUNTED_FAMILIES, and something is mounted
(bpf.base_filter(paths=...));
it stops in an fd layer when one of its ``fd``/``dirfd`` arguments is a
virtual fd of the calling process.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from umvu import arch

# The control channel: a call number no Linux kernel has (ASCII "VU").
# Outside umvu the kernel answers ENOSYS, which is how the commands know.
VU_CONTROL_NR = 0x5655

_TABLE = """
# name          x86_64 aarch64 args                                   family
read              0     63   fd,ptr,size                               read
write             1     64   fd,ptr,size                               write
open              2     -    opath,oflags,mode                         open
close             3     57   fd                                        close
stat              4     -    path,ptr                                  stat
fstat             5     80   fd,ptr                                    stat
lstat             6     -    lpath,ptr                                 stat
lseek             8     62   fd,int,whence                             lseek
mmap              9     222  ptr,size,int,int,fd,int                   mmap
munmap            11    215  ptr,size                                  unmap
msync             26    227  ptr,size,hex                              unmap
ioctl             16    29   fd,hex,ptr                                ioctl
pread64           17    67   fd,ptr,size,int                           read
pwrite64          18    68   fd,ptr,size,int                           write
readv             19    65   fd,ptr,int                                read
writev            20    66   fd,ptr,int                                write
access            21    -    path,mode                                 access
dup               32    23   fd                                        dup
dup2              33    -    fd,fd                                     dup
sendfile          40    71   fd,fd,ptr,size                            copy
connect           42    203  fd,uaddr,size                             sockaddr
sendto            44    206  fd,ptr,size,int,uaddr,size                sockaddr
bind              49    200  fd,ubind,size                             sockaddr
getsockname       51    204  fd,ptr,ptr                                sockname
getpeername       52    205  fd,ptr,ptr                                sockname
execve            59    221  path,ptr,ptr                              exec
fcntl             72    25   fd,int,hex                                fcntl
flock             73    32   fd,int                                    flock
fsync             74    82   fd                                        fsync
fdatasync         75    83   fd                                        fsync
truncate          76    45   path,int                                  truncate
ftruncate         77    46   fd,int                                    truncate
getdents          78    -    fd,ptr,size                               getdents
getcwd            79    17   ptr,size                                  getcwd
chdir             80    49   path                                      chdir
fchdir            81    50   fd                                        chdir
rename            82    -    npath,npath                            rename
mkdir             83    -    npath,mode                             mkdir
rmdir             84    -    npath                                  rmdir
creat             85    -    opath,mode                                open
link              86    -    lpath,npath                            link
unlink            87    -    npath                                  unlink
symlink           88    -    str,npath                              symlink
readlink          89    -    lpath,ptr,size                            readlink
chmod             90    -    path,mode                                 chmod
fchmod            91    52   fd,mode                                   chmod
chown             92    -    path,int,int                              chown
fchown            93    55   fd,int,int                                chown
lchown            94    -    lpath,int,int                             chown
umask             95    166  mode                                      umask
setuid            105   146  int                                       setid
setgid            106   144  int                                       setid
setreuid          113   145  int,int                                   setid
setregid          114   143  int,int                                   setid
setgroups         116   159  size,ptr                                  setid
setresuid         117   147  int,int,int                               setid
setresgid         119   149  int,int,int                               setid
setfsuid          122   151  int                                       setid
setfsgid          123   152  int                                       setid
utime             132   -    path,ptr                                  utime
mknod             133   -    npath,mode,hex                         mknod
statfs            137   43   path,ptr                                  statfs
fstatfs           138   44   fd,ptr                                    statfs
readahead         187   213  fd,int,size                               fdnoop
setxattr          188   5    path,str,ptr,size,int                     xattr
lsetxattr         189   6    lpath,str,ptr,size,int                    xattr
fsetxattr         190   7    fd,str,ptr,size,int                       xattr
getxattr          191   8    path,str,ptr,size                         xattr
lgetxattr         192   9    lpath,str,ptr,size                        xattr
fgetxattr         193   10   fd,str,ptr,size                           xattr
listxattr         194   11   path,ptr,size                             xattr
llistxattr        195   12   lpath,ptr,size                            xattr
flistxattr        196   13   fd,ptr,size                               xattr
removexattr       197   14   path,str                                  xattr
lremovexattr      198   15   lpath,str                                 xattr
fremovexattr      199   16   fd,str                                    xattr
getdents64        217   61   fd,ptr,size                               getdents
fadvise64         221   223  fd,int,int,int                            fdnoop
utimes            235   -    path,ptr                                  utime
openat            257   56   dirfd,opath,oflags,mode                   open
mkdirat           258   34   dirfd,npath,mode                       mkdir
mknodat           259   33   dirfd,npath,mode,hex                   mknod
fchownat          260   54   dirfd,apath,int,int,atflags               chown
futimesat         261   -    dirfd,path,ptr                            utime
newfstatat        262   79   dirfd,apath,ptr,atflags                   stat
unlinkat          263   35   dirfd,npath,hex                        unlink
renameat          264   38   dirfd,npath,dirfd,npath                rename
linkat            265   37   dirfd,fpath,dirfd,npath,atflags        link
symlinkat         266   36   str,dirfd,npath                        symlink
readlinkat        267   78   dirfd,lpath,ptr,size                      readlink
fchmodat          268   53   dirfd,path,mode                           chmod
faccessat         269   48   dirfd,path,mode                           access
splice            275   76   fd,ptr,fd,ptr,size,hex                    copy
tee               276   77   fd,fd,size,hex                            copy
sync_file_range   277   84   fd,int,int,hex                            fsync
utimensat         280   88   dirfd,apath,ptr,atflags                   utime
fallocate         285   47   fd,int,int,int                            fallocate
dup3              292   24   fd,fd,oflags                              dup
preadv            295   69   fd,ptr,int,int                            read
pwritev           296   70   fd,ptr,int,int                            write
syncfs            306   267  fd                                        fsync
renameat2         316   276  dirfd,npath,dirfd,npath,hex            rename
copy_file_range   326   285  fd,ptr,fd,ptr,size,hex                   copy
preadv2           327   286  fd,ptr,int,int,int,hex                    read
pwritev2          328   287  fd,ptr,int,int,int,hex                    write
execveat          322   281  dirfd,apath,ptr,ptr,atflags               exec
statx             332   291  dirfd,apath,atflags,hex,ptr               statx
chroot            161   51   path                                      chroot
mount             165   40   str,path,str,hex,ptr                      mount
umount2           166   39   path,hex                                  umount
close_range       436   436  int,int,hex                               close_range
openat2           437   437  dirfd,opath,ptr,size                      openat2
faccessat2        439   439  dirfd,apath,mode,atflags                  access
fchmodat2         452   452  dirfd,apath,mode,atflags                  chmod
io_uring_setup    425   425  int,ptr                                   bypass
# Only the kernel can do these, on a host file (watches, handles, swap, accounting, the new mount
# API): a path in a view is handed over as the host file behind it, or refused (dispatch: hostonly).
uselib            134   -    path                                      hostonly
pivot_root        155   41   path,path                                 hostonly
acct              163   89   path                                      hostonly
swapon            167   224  path,int                                  hostonly
swapoff           168   225  path                                      hostonly
quotactl          179   60   hex,path,int,ptr                          hostonly
inotify_add_watch 254   27   fd,path,hex                               hostonly
fanotify_mark     301   263  fd,hex,hex,dirfd,path                     hostonly
name_to_handle_at 303   264  dirfd,fpath,ptr,ptr,atflags               hostonly
open_tree         428   428  dirfd,apath,atflags                       hostonly
move_mount        429   429  dirfd,path,dirfd,path,hex                 hostonly
fspick            433   433  dirfd,path,hex                            hostonly
mount_setattr     442   442  dirfd,apath,atflags,ptr,size              hostonly
setxattrat        463   463  dirfd,apath,atflags,str,ptr,size          hostonly
getxattrat        464   464  dirfd,apath,atflags,str,ptr,size          hostonly
listxattrat       465   465  dirfd,apath,atflags,ptr,size              hostonly
removexattrat     466   466  dirfd,apath,atflags,str                   hostonly
open_tree_attr    467   467  dirfd,apath,atflags,ptr,size              hostonly
file_getattr      468   468  dirfd,apath,ptr,size,atflags              hostonly
file_setattr      469   469  dirfd,apath,ptr,size,atflags              hostonly
vu_control        0x5655 0x5655 int,ptr,size,ptr,size                  control
"""

# Families whose calls must stop even without a path or a virtual fd: the
# process's view (cwd, root, umask, fd table, mount table) changes through
# them, or (bypass) they would act on files out of umvu's sight.
ALWAYS_TRACED = frozenset({"getcwd", "chdir", "umask", "close_range", "control", "mount", "umount", "chroot",
                           "bypass", "setid"})

PATH_KINDS = frozenset({"path", "lpath", "npath", "apath", "fpath", "opath"})
ADDR_KINDS = frozenset({"ubind", "uaddr"})
# Calls with no name argument that stop once anything is mounted: they answer with a name that may
# be a view's (the AF_UNIX name a socket was bound to)
MOUNTED_FAMILIES = frozenset({"sockname"})


@dataclass(frozen=True)
class Syscall:
    name: str
    nr: int  # on this machine's architecture
    args: tuple[str, ...]
    family: str

    # Derived once per call (a cached_property stores into the instance): the dispatcher asks
    # them at every stop.
    @functools.cached_property
    def path_args(self) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.args) if k in PATH_KINDS)

    @functools.cached_property
    def addr_args(self) -> tuple[int, ...]:
        return tuple(i for i, k in enumerate(self.args) if k in ADDR_KINDS)

    @functools.cached_property
    def fd_args(self) -> tuple[int, ...]:
        """Arguments that name an fd (dirfds included): a virtual one must stop."""
        return tuple(i for i, k in enumerate(self.args) if k in ("fd", "dirfd"))

    @functools.cached_property
    def _index(self) -> dict[str, int]:
        return {k: i for i, k in reversed(list(enumerate(self.args)))}  # the first of each kind

    def arg_index(self, kind: str) -> int | None:
        return self._index.get(kind)


def _parse(table: str, arch_name: str) -> dict[int, Syscall]:
    column = {"x86_64": 1, "aarch64": 2}[arch_name]
    calls: dict[int, Syscall] = {}
    for line in table.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 5:
            raise ValueError(f"syscall table: bad line {line!r}")
        number = fields[column]
        if number == "-":
            continue
        nr = int(number, 0)
        if nr in calls:
            raise ValueError(f"syscall table: number {nr} twice ({calls[nr].name}, {fields[0]})")
        calls[nr] = Syscall(fields[0], nr, tuple(fields[3].split(",")), fields[4])
    return calls


def table_for(arch_name: str) -> dict[int, Syscall]:
    """The table for one architecture (tests check aarch64 parses too)."""
    return _parse(_TABLE, arch_name)


BY_NR: dict[int, Syscall] = table_for(arch.NAME)
BY_NAME: dict[str, Syscall] = {c.name: c for c in BY_NR.values()}


def base_traced(calls: dict[int, Syscall] = BY_NR, paths: bool = True) -> set[int]:
    """Numbers that stop in every tracee: view-changing calls, and path calls once anything is mounted."""
    return {nr for nr, c in calls.items()
            if paths and (c.path_args or c.addr_args or c.family in MOUNTED_FAMILIES) or c.family in ALWAYS_TRACED}


def fd_traced(calls: dict[int, Syscall] = BY_NR) -> dict[int, tuple[int, ...]]:
    """For each call with fd arguments, which argument positions hold fds."""
    return {nr: c.fd_args for nr, c in calls.items() if c.fd_args}
