/* umvu's in-process fast path (issue 18), preloaded into traced processes (LD_PRELOAD).
 *
 * Once anything is mounted, every path call stops (~35 us).  Most of them name host files far
 * from any mount.  This library decides that in the process: for the path calls it wraps, when
 * the path cannot lead into anything virtual, it makes the real call itself, through a trampoline
 * page at a fixed address that umvu's seccomp filters let pass by instruction pointer; otherwise
 * it calls libc's function, whose system call stops as before.
 *
 * What "cannot lead into anything virtual" means here:
 *   - the session publishes its mount points (and the trees umvu always serves: /proc, /sys) in a
 *     snapshot file, under a sequence count (odd while written); a process's own facts (the fast
 *     path is on for it, its root or its cwd is virtual, which fds are umvu's) umvu writes into a
 *     private page of the process (the page after the trampoline) before the process runs on
 *     after a stop that changed them, under a count too;
 *   - the name (absolute, or relative to a cwd that is the kernel's: getcwd) is walked
 *     lexically: no prefix of the walk may be at or under a published point (and, for an open,
 *     no point may be under the name: a directory listing would miss it); a name relative to a
 *     dirfd starts where /proc/self/fd says the fd is, unless the page says the fd is umvu's
 *     (virtual, or a real fd a module handed out, whose place only umvu knows);
 *   - the kernel is then made to walk it the same way: openat2 with RESOLVE_NO_SYMLINKS, so a
 *     symlink anywhere in the name (which could lead into a mount) sends the call back to umvu.
 * Anything unknown (a count that moved, an fd of 1024 or more, no snapshot) means: stop.
 *
 * Async-signal-safe and vfork-safe: no allocation, no locks, no libc state but errno; the
 * snapshot and the page are read, never written, here.
 *
 * The filter is the safety net: a program that drops LD_PRELOAD, is static, or makes its own
 * system calls still gets every stop.  This makes umvu a faster view, not a sandbox: code in the
 * process can call the trampoline.  x86-64 only.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* One place for each fact: umvu/fast.py says the same (and checks it against umvu_fast_layout). */
#define TRAMPOLINE 0x100000000000UL /* the page umvu's filters let pass */
#define PAGE 4096UL
#define SNAP_MAGIC 0x31747361662d7675UL /* "vu-fast1" */
#define SNAP_SIZE 65536UL
#define COUNTER_OFF 61440UL /* the snapshot's last page: calls served here, for umvu --stats (written) */
#define PROC_ON 1u      /* umvu wrote this page: the process may take the fast path */
#define PROC_CWD_VIRTUAL 2u
#define PROC_ROOTED 4u  /* root is not "/" (chroot) */
#define PROC_CWD_VIRTUAL 2u /* the cwd is umvu's (in a mount): the kernel's is not the view's */
#define PROC_NO_DIRFD 8u /* names relative to a dirfd stop (a module handed out a directory fd) */
#define NFDS 1024        /* fds the page says are umvu's; from there on a dirfd stops */
#define SNAP_OFF 1u     /* the session says: no fast path (a fake root, virtual ids: every stat is umvu's) */
#define SNAP_DEVICES 2u /* some device numbers are a module's: open only regular files and directories */

struct snapshot {          /* the session's, shared: read-only here */
	uint64_t magic;
	uint64_t seq;          /* odd while umvu writes */
	uint32_t flags;
	uint32_t count;        /* points that follow: NUL-terminated, one after the other */
	char points[];
};

struct proc_page {         /* this process's, private: umvu writes it (process_vm_writev) */
	uint64_t seq;
	uint32_t flags;
	uint32_t pad;
	uint8_t umvus[NFDS / 8]; /* fds that are umvu's: virtual, or real ones a module handed out */
};

/* as glibc's __OPEN_NEEDS_MODE: __O_TMPFILE includes O_DIRECTORY, so test all its bits */
#define NEEDS_MODE(f) (((f) & O_CREAT) || ((f) & __O_TMPFILE) == __O_TMPFILE)

typedef long (*tramp_fn)(long, long, long, long, long, long, long);
static tramp_fn tramp;                 /* NULL: every call goes to libc */
static const struct snapshot *snap;
static volatile struct proc_page *page;
static uint64_t *counter;

/* long tramp(nr, a1..a6): the system call made from the trampoline page */
static const unsigned char code[] = {
	0x48, 0x89, 0xf8,             /* mov rax, rdi */
	0x48, 0x89, 0xf7,             /* mov rdi, rsi */
	0x48, 0x89, 0xd6,             /* mov rsi, rdx */
	0x48, 0x89, 0xca,             /* mov rdx, rcx */
	0x4d, 0x89, 0xc2,             /* mov r10, r8 */
	0x4d, 0x89, 0xc8,             /* mov r8, r9 */
	0x4c, 0x8b, 0x4c, 0x24, 0x08, /* mov r9, [rsp+8] */
	0x0f, 0x05,                   /* syscall */
	0xc3,                         /* ret */
};

static long sys_raw(long nr, long a, long b, long c, long d, long e)
{
	return tramp(nr, a, b, c, d, e, 0);
}

__attribute__((constructor)) static void fast_init(void)
{
	const char *path = getenv("UMVU_FAST_SNAPSHOT");
	if (!path)
		return;
	void *t = mmap((void *)TRAMPOLINE, 2 * PAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (t != (void *)TRAMPOLINE) {
		if (t != MAP_FAILED)
			munmap(t, 2 * PAGE);
		return;
	}
	memcpy(t, code, sizeof code);
	if (mprotect(t, PAGE, PROT_READ | PROT_EXEC) != 0)
		return;
	int fd = open(path, O_RDWR | O_CLOEXEC); /* the counter page is written */
	if (fd < 0)
		return;
	void *s = mmap(NULL, SNAP_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	void *k = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, COUNTER_OFF);
	close(fd);
	if (s == MAP_FAILED || k == MAP_FAILED || ((struct snapshot *)s)->magic != SNAP_MAGIC)
		return;
	counter = k;
	snap = s;
	page = (struct proc_page *)(TRAMPOLINE + PAGE);
	tramp = (tramp_fn)t;
	/* tell umvu where the page is: it fills it now, and at every stop that changes it */
	syscall(0x5655, 2, (long)page, sizeof(struct proc_page), 0, 0);
}

/* ---- the decision ------------------------------------------------------------------------ */

/* Append NAME (len n) to the walk in BUF (length *len), lexically; 0, or -1 if it does not fit. */
static int step(char *buf, size_t *len, const char *name, size_t n, size_t cap)
{
	if (n == 0 || (n == 1 && name[0] == '.'))
		return 0;
	if (n == 2 && name[0] == '.' && name[1] == '.') {
		while (*len > 0 && buf[*len - 1] != '/')
			(*len)--;
		if (*len > 1)
			(*len)--; /* drop the slash, unless it is the root's */
		else
			*len = 1;
		buf[*len] = 0;
		return 0;
	}
	if (*len + 1 + n + 1 > cap)
		return -1;
	if (*len > 1)
		buf[(*len)++] = '/';
	memcpy(buf + *len, name, n);
	*len += n;
	buf[*len] = 0;
	return 0;
}

/* Whether the walk so far (BUF, LEN) is at or below a published point; BELOW: or above one. */
static int touches(const char *buf, size_t len, int below)
{
	const char *p = snap->points;
	for (uint32_t i = 0; i < snap->count; i++) {
		size_t n = strnlen(p, SNAP_SIZE);
		if (p + n >= (const char *)snap + SNAP_SIZE)
			return 1;
		if (n == 1 && p[0] == '/')
			return 1; /* something mounted on / */
		if (len >= n && memcmp(buf, p, n) == 0 && (len == n || buf[n] == '/'))
			return 1;
		if (below && n > len && memcmp(buf, p, len) == 0 && (len == 1 || p[len] == '/'))
			return 1;
		p += n + 1;
	}
	return 0;
}

/* 1 when the call on (DIRFD, PATH) can be made here: an absolute name, or one relative to a cwd
 * or dirfd that is the kernel's own (not umvu's), whose lexical walk meets nothing virtual. */
static int host_only(int dirfd, const char *path, int is_open)
{
	if (!tramp || !path || !path[0])
		return 0;
	uint64_t s1 = __atomic_load_n(&snap->seq, __ATOMIC_ACQUIRE);
	uint64_t p1 = __atomic_load_n(&page->seq, __ATOMIC_ACQUIRE);
	uint32_t pf = page->flags;
	if ((s1 & 1) || (p1 & 1) || (snap->flags & SNAP_OFF) || !(pf & PROC_ON) || (pf & PROC_ROOTED))
		return 0;
	char buf[2 * 4096 + 2];
	size_t len = 1;
	buf[0] = '/', buf[1] = 0;
	if (path[0] != '/' && dirfd == AT_FDCWD) { /* the cwd: the kernel's, unless umvu keeps one */
		if (pf & PROC_CWD_VIRTUAL)
			return 0;
		long n = sys_raw(SYS_getcwd, (long)buf, 4097, 0, 0, 0);
		if (n <= 1 || buf[0] != '/')
			return 0; /* removed, or outside the root: umvu answers */
		len = strnlen(buf, 4097);
	} else if (path[0] != '/') { /* a dirfd: where the kernel has it, unless it is umvu's */
		if ((pf & PROC_NO_DIRFD) || dirfd < 0 || dirfd >= NFDS || (page->umvus[dirfd / 8] >> (dirfd % 8)) & 1)
			return 0;
		char link[32] = "/proc/self/fd/";
		int i = 14, d = dirfd, digits[12], k = 0;
		do
			digits[k++] = d % 10, d /= 10;
		while (d);
		while (k)
			link[i++] = (char)('0' + digits[--k]);
		link[i] = 0;
		long n = sys_raw(SYS_readlink, (long)link, (long)buf, 4096, 0, 0);
		if (n <= 0 || n >= 4096 || buf[0] != '/')
			return 0; /* a pipe, a socket, an anonymous file: the kernel's answer, from umvu */
		buf[n] = 0;
		len = (size_t)n;
		if (len >= 10 && memcmp(buf + len - 10, " (deleted)", 10) == 0)
			return 0;
	}
	if (touches(buf, len, 0))
		return 0;
	const char *c = path;
	while (*c) {
		while (*c == '/')
			c++;
		const char *e = c;
		while (*e && *e != '/')
			e++;
		if (e == c)
			break;
		if (step(buf, &len, c, (size_t)(e - c), sizeof buf) != 0 || touches(buf, len, 0))
			return 0;
		c = e;
	}
	if (is_open && touches(buf, len, 1))
		return 0;
	/* the facts read must not have moved meanwhile */
	return __atomic_load_n(&snap->seq, __ATOMIC_ACQUIRE) == s1 &&
	       __atomic_load_n(&page->seq, __ATOMIC_ACQUIRE) == p1;
}

static void served(void)
{
	__atomic_fetch_add(counter, 1, __ATOMIC_RELAXED);
}

/* The name opened as the kernel walks it with no symlink followed; -errno (-ELOOP: a symlink). */
static long open_nosym(int dirfd, const char *path, long flags, long mode)
{
	struct open_how how = {.flags = (uint64_t)flags, .mode = (uint64_t)mode,
			       .resolve = RESOLVE_NO_SYMLINKS};
	if (!NEEDS_MODE(flags))
		how.mode = 0;
	return sys_raw(SYS_openat2, dirfd, (long)path, (long)&how, sizeof how, 0);
}

static long ret_errno(long r)
{
	if (r < 0 && r > -4096) {
		errno = (int)-r;
		return -1;
	}
	return r;
}

/* ---- the calls ---------------------------------------------------------------------------- */

#define REAL(name) static __typeof__(name) *real_##name; \
	if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

/* A wrapper's body: the library's answer when FAST (which sets `done`) took the call, else libc's */
#define TAKE(type, fast, name, ...) \
	{ \
		int done; \
		type r = fast; \
		if (done) \
			return r; \
		REAL(name); \
		return real_##name(__VA_ARGS__); \
	}

/* stat-like: NOFOLLOW or not; a trailing symlink followed means: ask umvu (ELOOP here) */
static int fast_stat(int dirfd, const char *path, struct stat *st, int flags, int *done)
{
	*done = 0;
	if ((flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT)) || !host_only(dirfd, path, 0))
		return 0;
	long fd = open_nosym(dirfd, path, O_PATH | O_CLOEXEC | ((flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0), 0);
	if (fd == -ELOOP || fd == -EXDEV || fd == -ENOSYS || fd == -EAGAIN)
		return 0; /* a symlink on the way: umvu walks it */
	*done = 1;
	served();
	if (fd < 0)
		return (int)ret_errno(fd);
	long r = sys_raw(SYS_newfstatat, fd, (long)"", (long)st, AT_EMPTY_PATH, 0);
	sys_raw(SYS_close, fd, 0, 0, 0, 0);
	return (int)ret_errno(r);
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
TAKE(int, fast_stat(dirfd, path, st, flags, &done), fstatat, dirfd, path, st, flags)

int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	return fstatat(dirfd, path, (struct stat *)st, flags); /* the same struct on x86-64 */
}

int stat(const char *path, struct stat *st)
TAKE(int, fast_stat(AT_FDCWD, path, st, 0, &done), stat, path, st)

int stat64(const char *path, struct stat64 *st)
{
	return stat(path, (struct stat *)st);
}

int lstat(const char *path, struct stat *st)
TAKE(int, fast_stat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW, &done), lstat, path, st)

int lstat64(const char *path, struct stat64 *st)
{
	return lstat(path, (struct stat *)st);
}

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	if (!(flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)) && host_only(dirfd, path, 0)) {
		long fd = open_nosym(dirfd, path, O_PATH | O_CLOEXEC | ((flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0), 0);
		if (fd != -ELOOP && fd != -EXDEV && fd != -ENOSYS && fd != -EAGAIN) {
			served();
			if (fd < 0)
				return (int)ret_errno(fd);
			long r = sys_raw(SYS_statx, fd, (long)"", AT_EMPTY_PATH | (flags & AT_STATX_SYNC_TYPE), mask,
					 (long)stx);
			sys_raw(SYS_close, fd, 0, 0, 0, 0);
			return (int)ret_errno(r);
		}
	}
	REAL(statx);
	return real_statx(dirfd, path, flags, mask, stx);
}

static int fast_access(int dirfd, const char *path, int mode, int flags, int *done)
{
	*done = 0;
	if ((flags & ~(AT_SYMLINK_NOFOLLOW | AT_EACCESS)) || !host_only(dirfd, path, 0))
		return 0;
	long fd = open_nosym(dirfd, path, O_PATH | O_CLOEXEC | ((flags & AT_SYMLINK_NOFOLLOW) ? O_NOFOLLOW : 0), 0);
	if (fd == -ELOOP || fd == -EXDEV || fd == -ENOSYS || fd == -EAGAIN)
		return 0;
	*done = 1;
	served();
	if (fd < 0)
		return (int)ret_errno(fd);
	long r = sys_raw(SYS_faccessat2, fd, (long)"", mode, AT_EMPTY_PATH | (flags & AT_EACCESS), 0);
	sys_raw(SYS_close, fd, 0, 0, 0, 0);
	return (int)ret_errno(r);
}

int access(const char *path, int mode)
TAKE(int, fast_access(AT_FDCWD, path, mode, 0, &done), access, path, mode)

int faccessat(int dirfd, const char *path, int mode, int flags)
TAKE(int, fast_access(dirfd, path, mode, flags, &done), faccessat, dirfd, path, mode, flags)

static ssize_t fast_readlink(int dirfd, const char *path, char *buf, size_t size, int *done)
{
	*done = 0;
	if (!host_only(dirfd, path, 0))
		return 0;
	long fd = open_nosym(dirfd, path, O_PATH | O_NOFOLLOW | O_CLOEXEC, 0);
	if (fd == -ELOOP || fd == -EXDEV || fd == -ENOSYS || fd == -EAGAIN)
		return 0;
	*done = 1;
	served();
	if (fd < 0)
		return ret_errno(fd);
	long r = sys_raw(SYS_readlinkat, fd, (long)"", (long)buf, (long)size, 0);
	if (r == -ENOENT) { /* the empty name of what is not a symlink: readlink(2) says EINVAL */
		struct stat st;
		if (sys_raw(SYS_newfstatat, fd, (long)"", (long)&st, AT_EMPTY_PATH, 0) == 0 && !S_ISLNK(st.st_mode))
			r = -EINVAL;
	}
	sys_raw(SYS_close, fd, 0, 0, 0, 0);
	return ret_errno(r);
}

ssize_t readlink(const char *path, char *buf, size_t size)
TAKE(ssize_t, fast_readlink(AT_FDCWD, path, buf, size, &done), readlink, path, buf, size)

ssize_t readlinkat(int dirfd, const char *path, char *buf, size_t size)
TAKE(ssize_t, fast_readlink(dirfd, path, buf, size, &done), readlinkat, dirfd, path, buf, size)

/* open for reading, of a host file: no O_CREAT, O_TMPFILE or write (umask, records, copy-up: umvu's) */
static int fast_open(int dirfd, const char *path, int flags, int *done)
{
	*done = 0;
	if ((flags & O_ACCMODE) != O_RDONLY || NEEDS_MODE(flags) || (flags & O_TRUNC) ||
	    !host_only(dirfd, path, 1))
		return 0;
	if (snap->flags & SNAP_DEVICES) { /* a node whose number a module serves is the module's to open */
		long p = open_nosym(dirfd, path, O_PATH | O_CLOEXEC | (flags & O_NOFOLLOW), 0);
		if (p < 0)
			return 0;
		struct stat st;
		long r = sys_raw(SYS_newfstatat, p, (long)"", (long)&st, AT_EMPTY_PATH, 0);
		sys_raw(SYS_close, p, 0, 0, 0, 0);
		if (r != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
			return 0;
	}
	long fd = open_nosym(dirfd, path, flags | O_LARGEFILE, 0);
	if (fd == -ELOOP || fd == -EXDEV || fd == -ENOSYS || fd == -EAGAIN || fd == -EINVAL)
		return 0; /* EINVAL: flags openat would ignore and openat2 refuses */
	*done = 1;
	served();
	return (int)ret_errno(fd);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	int done, r = fast_open(dirfd, path, flags, &done);
	if (done)
		return r;
	va_list ap;
	va_start(ap, flags);
	mode_t mode = NEEDS_MODE(flags) ? va_arg(ap, mode_t) : 0;
	va_end(ap);
	REAL(openat);
	return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = NEEDS_MODE(flags) ? va_arg(ap, mode_t) : 0;
	va_end(ap);
	return openat(AT_FDCWD, path, flags, mode); /* glibc's open is the same call */
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

/* _FORTIFY_SOURCE's entry points (tar calls these): open with no mode argument */
int __open_2(const char *path, int flags)
TAKE(int, fast_open(AT_FDCWD, path, flags, &done), __open_2, path, flags)

int __open64_2(const char *path, int flags)
TAKE(int, fast_open(AT_FDCWD, path, flags, &done), __open64_2, path, flags)

int __openat_2(int dirfd, const char *path, int flags)
TAKE(int, fast_open(dirfd, path, flags, &done), __openat_2, dirfd, path, flags)

int __openat64_2(int dirfd, const char *path, int flags)
TAKE(int, fast_open(dirfd, path, flags, &done), __openat64_2, dirfd, path, flags)

/* glibc's opendir and fopen open through internal calls LD_PRELOAD cannot reach: for a host
 * directory or a file opened for reading, the library opens it and hands the fd to fdopendir or
 * fdopen, as glibc would with its own. */
#include <dirent.h>
#include <stdio.h>

DIR *opendir(const char *name)
{
	int done, fd = fast_open(AT_FDCWD, name, O_RDONLY | O_NONBLOCK | O_DIRECTORY | O_CLOEXEC, &done);
	if (done) {
		if (fd < 0)
			return NULL;
		DIR *d = fdopendir(fd);
		if (!d) {
			int e = errno;
			sys_raw(SYS_close, fd, 0, 0, 0, 0);
			errno = e;
		}
		return d;
	}
	REAL(opendir);
	return real_opendir(name);
}

/* "r" with any of b, e, m, c: no write, no create, no ",ccs=" conversion */
static int read_only_mode(const char *mode, int *flags)
{
	if (!mode || mode[0] != 'r')
		return 0;
	*flags = O_RDONLY;
	for (const char *m = mode + 1; *m; m++) {
		if (*m == 'e')
			*flags |= O_CLOEXEC;
		else if (*m != 'b' && *m != 'm' && *m != 'c')
			return 0;
	}
	return 1;
}

static FILE *fast_fopen(const char *path, const char *mode, int *done)
{
	int flags;
	*done = 0;
	if (!read_only_mode(mode, &flags))
		return NULL;
	int fd = fast_open(AT_FDCWD, path, flags, done);
	if (!*done || fd < 0)
		return NULL;
	FILE *f = fdopen(fd, mode);
	if (!f) {
		int e = errno;
		sys_raw(SYS_close, fd, 0, 0, 0, 0);
		errno = e;
	}
	return f;
}

FILE *fopen(const char *path, const char *mode)
TAKE(FILE *, fast_fopen(path, mode, &done), fopen, path, mode)

FILE *fopen64(const char *path, const char *mode)
TAKE(FILE *, fast_fopen(path, mode, &done), fopen64, path, mode)
