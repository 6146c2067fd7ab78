"""The syscall table: the one place that says what shape each call has.

Everything else is derived from it: the seccomp filter (which calls stop at
all), the per-fd filter layers (which calls stop for a virtual fd), argument
decoding in the dispatcher, and the debug log's formatting.  Adding a call is
adding a line (VUOS keeps the same fact in vu_syscalls.conf, gVisor in
linux64.go).

Columns: name, x86_64 number, aarch64 number (- where the call does not exist),
argument kinds, family (the handler in umvu.calls that serves the call when
it is virtual), choice (how the service that serves it is chosen, once,
before the handler runs: VUOS's first column of vu_syscalls.conf):

  fd      the open file its first ``fd`` argument names: a virtual fd's (its ``ops``
          serve it), else the kernel's call.  A real fd a module handed out is
          the module's for the few calls its layer stops (guard_handed)
  ioctl   as fd; the request then picks the operation (a device's table)
  path    the mount its path names, resolved by the handler with the call's intent
          (an empty path with AT_EMPTY_PATH: the dirfd's open file)
  nr      the call number alone: a service a module claimed the call for
          (vu.claim_call: uname, the ids, the clocks), else the core's own state
          (umask, cwd, credentials) or the kernel's call
  family  the address family of socket(2) and socketpair(2): a service a module
          claimed the family for (vu.claim_family), else the kernel's call
  custom  the handler chooses: two paths or fds (rename, link, the copies, dup2),
          the fd table (close, dup, fcntl, close_range), an address (mmap's
          mapping, munmap), a socket address, the mount table, exec

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

from umvu import arch


def s32(v: int) -> int:
    """An fd or int argument as the kernel reads it: the low 32 bits, signed."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


# The control channel: a call number no Linux kernel has (ASCII "VU").
# Outside umvu the kernel answers ENOSYS, which is how the commands know.
VU_CONTROL_NR = 0x5655

_TABLE = """
# name          x86_64 aarch64 args                                   family      choice
read              0     63   fd,ptr,size                               read        fd
write             1     64   fd,ptr,size                               write       fd
open              2     -    opath,oflags,mode                         open        path
close             3     57   fd                                        close       custom
stat              4     -    path,ptr                                  stat        path
fstat             5     80   fd,ptr                                    stat        fd
lstat             6     -    lpath,ptr                                 stat        path
lseek             8     62   fd,int,whence                             lseek       fd
mmap              9     222  ptr,size,int,int,fd,int                   mmap        custom
munmap            11    215  ptr,size                                  unmap       custom
msync             26    227  ptr,size,hex                              unmap       custom
ioctl             16    29   fd,hex,ptr                                ioctl       ioctl
pread64           17    67   fd,ptr,size,int                           read        fd
pwrite64          18    68   fd,ptr,size,int                           write       fd
readv             19    65   fd,ptr,int                                read        fd
writev            20    66   fd,ptr,int                                write       fd
access            21    -    path,mode                                 access      path
dup               32    23   fd                                        dup         custom
dup2              33    -    fd,fd                                     dup         custom
sendfile          40    71   fd,fd,ptr,size                            copy        custom
connect           42    203  fd,uaddr,size                             sockaddr    custom
sendto            44    206  fd,ptr,size,int,uaddr,size                sockaddr    custom
bind              49    200  fd,ubind,size                             sockaddr    custom
getsockname       51    204  fd,ptr,ptr                                sockname    custom
getpeername       52    205  fd,ptr,ptr                                sockname    custom
execve            59    221  path,ptr,ptr                              exec        custom
fcntl             72    25   fd,int,hex                                fcntl       custom
flock             73    32   fd,int                                    flock       fd
fsync             74    82   fd                                        fsync       fd
fdatasync         75    83   fd                                        fsync       fd
truncate          76    45   path,int                                  truncate    path
ftruncate         77    46   fd,int                                    truncate    fd
getdents          78    -    fd,ptr,size                               getdents    fd
getcwd            79    17   ptr,size                                  getcwd      nr
chdir             80    49   path                                      chdir       path
fchdir            81    50   fd                                        chdir       custom
rename            82    -    npath,npath                            rename      custom
mkdir             83    -    npath,mode                             mkdir       path
rmdir             84    -    npath                                  rmdir       path
creat             85    -    opath,mode                                open        path
link              86    -    lpath,npath                            link        custom
unlink            87    -    npath                                  unlink      path
symlink           88    -    str,npath                              symlink     path
readlink          89    -    lpath,ptr,size                            readlink    path
chmod             90    -    path,mode                                 chmod       path
fchmod            91    52   fd,mode                                   chmod       fd
chown             92    -    path,int,int                              chown       path
fchown            93    55   fd,int,int                                chown       fd
lchown            94    -    lpath,int,int                             chown       path
umask             95    166  mode                                      umask       nr
setuid            105   146  int                                       setid       nr
setgid            106   144  int                                       setid       nr
setreuid          113   145  int,int                                   setid       nr
setregid          114   143  int,int                                   setid       nr
setgroups         116   159  size,ptr                                  setid       nr
setresuid         117   147  int,int,int                               setid       nr
setresgid         119   149  int,int,int                               setid       nr
setfsuid          122   151  int                                       setid       nr
setfsgid          123   152  int                                       setid       nr
utime             132   -    path,ptr                                  utime       path
mknod             133   -    npath,mode,hex                         mknod       path
statfs            137   43   path,ptr                                  statfs      path
fstatfs           138   44   fd,ptr                                    statfs      fd
readahead         187   213  fd,int,size                               fdnoop      fd
setxattr          188   5    path,str,ptr,size,int                     xattr       path
lsetxattr         189   6    lpath,str,ptr,size,int                    xattr       path
fsetxattr         190   7    fd,str,ptr,size,int                       xattr       fd
getxattr          191   8    path,str,ptr,size                         xattr       path
lgetxattr         192   9    lpath,str,ptr,size                        xattr       path
fgetxattr         193   10   fd,str,ptr,size                           xattr       fd
listxattr         194   11   path,ptr,size                             xattr       path
llistxattr        195   12   lpath,ptr,size                            xattr       path
flistxattr        196   13   fd,ptr,size                               xattr       fd
removexattr       197   14   path,str                                  xattr       path
lremovexattr      198   15   lpath,str                                 xattr       path
fremovexattr      199   16   fd,str                                    xattr       fd
getdents64        217   61   fd,ptr,size                               getdents    fd
fadvise64         221   223  fd,int,int,int                            fdnoop      fd
utimes            235   -    path,ptr                                  utime       path
openat            257   56   dirfd,opath,oflags,mode                   open        path
mkdirat           258   34   dirfd,npath,mode                       mkdir       path
mknodat           259   33   dirfd,npath,mode,hex                   mknod       path
fchownat          260   54   dirfd,apath,int,int,atflags               chown       path
futimesat         261   -    dirfd,path,ptr                            utime       path
newfstatat        262   79   dirfd,apath,ptr,atflags                   stat        path
unlinkat          263   35   dirfd,npath,hex                        unlink      path
renameat          264   38   dirfd,npath,dirfd,npath                rename      custom
linkat            265   37   dirfd,fpath,dirfd,npath,atflags        link        custom
symlinkat         266   36   str,dirfd,npath                        symlink     path
readlinkat        267   78   dirfd,lpath,ptr,size                      readlink    path
fchmodat          268   53   dirfd,path,mode                           chmod       path
faccessat         269   48   dirfd,path,mode                           access      path
splice            275   76   fd,ptr,fd,ptr,size,hex                    copy        custom
tee               276   77   fd,fd,size,hex                            copy        custom
sync_file_range   277   84   fd,int,int,hex                            fsync       fd
utimensat         280   88   dirfd,apath,ptr,atflags                   utime       path
fallocate         285   47   fd,int,int,int                            fallocate   fd
dup3              292   24   fd,fd,oflags                              dup         custom
preadv            295   69   fd,ptr,int,int                            read        fd
pwritev           296   70   fd,ptr,int,int                            write       fd
syncfs            306   267  fd                                        fsync       fd
renameat2         316   276  dirfd,npath,dirfd,npath,hex            rename      custom
copy_file_range   326   285  fd,ptr,fd,ptr,size,hex                   copy        custom
preadv2           327   286  fd,ptr,int,int,int,hex                    read        fd
pwritev2          328   287  fd,ptr,int,int,int,hex                    write       fd
execveat          322   281  dirfd,apath,ptr,ptr,atflags               exec        custom
statx             332   291  dirfd,apath,atflags,hex,ptr               statx       path
chroot            161   51   path                                      chroot      custom
mount             165   40   str,path,str,hex,ptr                      mount       custom
umount2           166   39   path,hex                                  umount      custom
close_range       436   436  int,int,hex                               close_range custom
openat2           437   437  dirfd,opath,ptr,size                      openat2     path
faccessat2        439   439  dirfd,apath,mode,atflags                  access      path
fchmodat2         452   452  dirfd,apath,mode,atflags                  chmod       path
io_uring_setup    425   425  int,ptr                                   bypass      nr
# Served by a module that claims the call (vu.claim_call) or the address family (vu.claim_family),
# else the kernel's: they stop only once claimed (registry.CallClaim).
socket            41    198  int,int,int                               service     family
socketpair        53    199  int,int,int,ptr                           service     family
uname             63    160  ptr                                       service     nr
getuid            102   174  -                                         service     nr
getgid            104   176  -                                         service     nr
geteuid           107   175  -                                         service     nr
getegid           108   177  -                                         service     nr
getgroups         115   158  size,ptr                                  service     nr
getresuid         118   148  ptr,ptr,ptr                               service     nr
getresgid         120   150  ptr,ptr,ptr                               service     nr
capget            125   90   ptr,ptr                                   service     nr
capset            126   91   ptr,ptr                                   service     nr
unshare           272   97   hex                                       unshare     nr
sethostname       170   161  str,size                                  service     nr
setdomainname     171   162  str,size                                  service     nr
gettimeofday      96    169  ptr,ptr                                   service     nr
settimeofday      164   170  ptr,ptr                                   service     nr
time              201   -    ptr                                       service     nr
clock_settime     227   112  int,ptr                                   service     nr
clock_gettime     228   113  int,ptr                                   service     nr
clock_getres      229   114  int,ptr                                   service     nr
# Only the kernel can do these, on a host file (watches, handles, swap, accounting, the new mount
# API): a path in a view is handed over as the host file behind it, or refused (calls.hostonly).
uselib            134   -    path                                      hostonly    path
pivot_root        155   41   path,path                                 hostonly    path
acct              163   89   path                                      hostonly    path
swapon            167   224  path,int                                  hostonly    path
swapoff           168   225  path                                      hostonly    path
quotactl          179   60   hex,path,int,ptr                          hostonly    path
inotify_add_watch 254   27   fd,path,hex                               hostonly    path
fanotify_mark     301   263  fd,hex,hex,dirfd,path                     hostonly    path
name_to_handle_at 303   264  dirfd,fpath,ptr,ptr,atflags               hostonly    path
open_tree         428   428  dirfd,apath,atflags                       hostonly    path
move_mount        429   429  dirfd,path,dirfd,path,hex                 hostonly    path
fspick            433   433  dirfd,path,hex                            hostonly    path
mount_setattr     442   442  dirfd,apath,atflags,ptr,size              hostonly    path
setxattrat        463   463  dirfd,apath,atflags,str,ptr,size          hostonly    path
getxattrat        464   464  dirfd,apath,atflags,str,ptr,size          hostonly    path
listxattrat       465   465  dirfd,apath,atflags,ptr,size              hostonly    path
removexattrat     466   466  dirfd,apath,atflags,str                   hostonly    path
open_tree_attr    467   467  dirfd,apath,atflags,ptr,size              hostonly    path
file_getattr      468   468  dirfd,apath,ptr,size,atflags              hostonly    path
file_setattr      469   469  dirfd,apath,ptr,size,atflags              hostonly    path
vu_control        0x5655 0x5655 int,ptr,size,ptr,size                  control     nr
"""

# Families whose calls must stop even without a path or a virtual fd: the
# process's view (cwd, root, umask, fd table, mount table) changes through
# them, or (bypass) they would act on files out of umvu's sight.
ALWAYS_TRACED = frozenset({"getcwd", "chdir", "umask", "close_range", "control", "mount", "umount", "chroot",
                           "bypass", "setid"})

CHOICES = frozenset({"fd", "ioctl", "path", "nr", "family", "custom"})
PATH_KINDS = frozenset({"path", "lpath", "npath", "apath", "fpath", "opath"})
ADDR_KINDS = frozenset({"ubind", "uaddr"})
# Calls with no name argument that stop once anything is mounted: they answer with a name that may
# be a view's (the AF_UNIX name a socket was bound to)
MOUNTED_FAMILIES = frozenset({"sockname"})


class Syscall:
    """One row of the table (immutable; a plain class, not a dataclass: start-up does not pay for
    importing dataclasses)."""

    def __init__(self, name: str, nr: int, args: tuple[str, ...], family: str, choice: str) -> None:
        self.name = name
        self.nr = nr  # on this machine's architecture
        self.args = args
        self.family = family
        self.choice = choice  # CHOICES: how the call's service is chosen

    def _key(self) -> tuple:
        return (self.name, self.nr, self.args, self.family, self.choice)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Syscall) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Syscall{self._key()!r}"

    def with_args(self, args: tuple[str, ...]) -> Syscall:
        """The same call seen with other argument kinds (a handler's rewritten view of it)."""
        return Syscall(self.name, self.nr, args, self.family, self.choice)

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
        if len(fields) != 6:
            raise ValueError(f"syscall table: bad line {line!r}")
        number = fields[column]
        if number == "-":
            continue
        nr = int(number, 0)
        if nr in calls:
            raise ValueError(f"syscall table: number {nr} twice ({calls[nr].name}, {fields[0]})")
        if fields[5] not in CHOICES:
            raise ValueError(f"syscall table: {fields[0]}: no such choice {fields[5]!r}")
        args = () if fields[3] == "-" else tuple(fields[3].split(","))
        calls[nr] = Syscall(fields[0], nr, args, fields[4], fields[5])
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
