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
 *     dirfd starts where /proc/self/fd says the fd is, if the fd is a directory (a virtual fd's
 *     placeholder never is) and the page does not say a module handed it out (its place only
 *     umvu knows);
 *   - the kernel is then made to walk it the same way: openat2 with RESOLVE_NO_SYMLINKS, so it
 *     follows no symlink (which could lead into a mount); a name it refuses for holding one is
 *     resolved here as the view resolves it (resolve) and decided again;
 *   - inside a mount that shows a host directory by a rule (a bind), or two by overlayfs's rule
 *     (layers: vufs cow), the rest of the name is the host's, under the snapshot's rules.
 * Anything unknown (a count that moved, an fd of 1024 or more, no snapshot) means: stop.
 *
 * Async-signal-safe and vfork-safe: no allocation (but what getcwd and realpath are asked to
 * allocate), no locks; the state kept is a few dirfds' view paths and, per thread, pages found
 * readable (readable); the snapshot and the page are read, never written, here.
 *
 * The filter is the safety net: a program that drops LD_PRELOAD, is static, or makes its own
 * system calls still gets every stop.  This makes umvu a faster view, not a sandbox: code in the
 * process can call the trampoline.  x86-64 only.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <limits.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/single_threaded.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* One place for each fact: umvu/fast.py reads these defines from here (fast._defines). */
#define TRAMPOLINE 0x100000000000UL /* the page umvu's filters let pass */
#define PAGE 4096UL
#define SNAP_MAGIC 0x35747361662d7675UL /* "vu-fast5" */
#define SNAP_SIZE 65536UL
#define COUNTER_OFF 61440UL /* the snapshot's last page: calls served here, for umvu --stats (written) */
#define PROC_ON 1u      /* umvu wrote this page: the process may take the fast path */
#define PROC_ROOTED 4u  /* root is not "/" (chroot) */
#define PROC_CWD_VIRTUAL 2u /* the cwd is umvu's (in a mount): the kernel's is not the view's */
#define PROC_NO_DIRFD 8u /* names relative to a dirfd stop (a module handed out a directory fd) */
#define PROC_GUARDED 16u /* fchmod & co. stop in this process: a lower layer's file may be opened here */
#define REGISTER_FSTAT 1u /* (the registration's flags) libc's fstat reaches the library */
#define NFDS 1024        /* fds the page says are umvu's; from there on a dirfd stops */
#define SNAP_OFF 1u     /* the session says: no fast path (a fake root, virtual ids: every stat is umvu's) */
#define SNAP_DEVICES 2u /* some device numbers are a module's: open only regular files and directories */
#define SNAP_IDLE 4u    /* no path call stops yet (nothing mounted): libc's calls are the kernel's at once */
#define SNAP_HOLLOW 8u  /* every point but /proc's and /sys's is, on the host, nothing, an empty directory or
			 * no directory (held): the kernel's walk that meets one fails or ends on it (native_stat) */
#define SNAP_LAYERED 16u /* a layered mount is published: its directories show its st_dev */
#define HELD 16         /* the points' host objects the snapshot holds (SNAP_HOLLOW) */
#define PROC_PLAIN 32u  /* the process's own /proc links show the host's: no fd of umvu's, a real cwd, root
			 * and program (native_stat) */
#define PROC_CWD_PLAIN 64u /* its cwd is not "/" nor in /proc or /sys: a relative name with no ".." reaches
			    * neither */

struct snapshot {          /* the session's, shared: read-only here */
	uint64_t magic;
	uint64_t seq;          /* odd while umvu writes */
	uint32_t flags;
	uint32_t count;        /* entries that follow, one after the other (next_entry) */
	uint64_t moves;        /* directories renamed or removed in mounts so far: a cwd of umvu's may be stale */
	uint64_t changing;     /* calls being served that may change a layered mount's trees (E_LAYERS) */
	uint64_t changes;      /* such calls begun or ended so far: a walk of layers made meanwhile is not taken */
	uint64_t proc_dev, sys_dev; /* st_dev of /proc and /sys, whose files umvu shows (native_stat) */
	uint32_t nheld, pad;
	struct {
		uint64_t dev, ino;
	} held[HELD];          /* SNAP_HOLLOW: what the host has at a point, when it has anything there */
	char points[];
};

struct proc_page {         /* this process's, private: umvu writes it (process_vm_writev) */
	uint64_t seq;
	uint32_t flags;
	uint32_t cwd_len;      /* PROC_CWD_VIRTUAL: the length of the cwd's view path that follows */
	uint64_t moves;        /* the snapshot's moves when the page was written: the cwd holds while equal */
	uint8_t umvus[NFDS / 8]; /* real fds a module handed out that no rule places (virtual fds: decide) */
	char cwd[PAGE - 24 - NFDS / 8]; /* the view's cwd, when umvu keeps it (no NUL; 0 long: removed) */
};

/* as glibc's __OPEN_NEEDS_MODE: __O_TMPFILE includes O_DIRECTORY, so test all its bits */
#define NEEDS_MODE(f) (((f) & O_CREAT) || ((f) & __O_TMPFILE) == __O_TMPFILE)
/* an open's mode argument, in the variadic function itself: read only when FLAGS need one */
#define MODE_ARG(flags) \
	({ \
		va_list ap_; \
		va_start(ap_, flags); \
		mode_t m_ = NEEDS_MODE(flags) ? va_arg(ap_, mode_t) : 0; \
		va_end(ap_); \
		m_; \
	})

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

static long sys_raw6(long nr, long a, long b, long c, long d, long e, long f)
{
	return tramp(nr, a, b, c, d, e, f);
}

static void hook_libc(void);
static unsigned hooks_gen; /* counts hook_libc's runs: REAL looks libc's functions up again */
/* The fds opened in a layered mount's layers, by the library (layered_open) or by umvu (which
 * writes here when it hands one out): the file each held then.  A layer's host directory is the
 * view's only when opened so; one opened by its host name is the host's (a create or a removal
 * from it is made there, not in the layers).  umvu reads this table too (FdTable.marked): fork
 * copies it with the fds, and an fd closed and its number used again holds another file. */
static struct {
	uint64_t dev, ino;
} marks[NFDS];

/* Whether fstat of a directory reaches the library (libc's fstatat is hooked: hook_libc), which
 * shows a layered mount's directories with the mount's st_dev, as umvu does (dir_stat_here) */
static int dirs_fstat_here;
static void *libc_fn(const char *name);

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
	/* opened from the trampoline (no stop: the session's own file, outside every mount); the
	 * counter page is written */
	int fd = (int)((tramp_fn)t)(SYS_openat, AT_FDCWD, (long)path, O_RDWR | O_CLOEXEC, 0, 0, 0);
	if (fd < 0)
		return;
	void *s = mmap(NULL, SNAP_SIZE, PROT_READ, MAP_SHARED, fd, 0);
	void *k = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, COUNTER_OFF);
	((tramp_fn)t)(SYS_close, fd, 0, 0, 0, 0, 0);
	if (s == MAP_FAILED || k == MAP_FAILED || ((struct snapshot *)s)->magic != SNAP_MAGIC)
		return;
	counter = k;
	snap = s;
	page = (struct proc_page *)(TRAMPOLINE + PAGE);
	tramp = (tramp_fn)t;
	hook_libc();
	/* tell umvu where the page is (it fills it now, and at every stop that changes it), and
	 * whether libc's fstat reaches the library (directories of layered mounts: dir_stat_here) */
	syscall(0x5655, 2, (long)page, sizeof(struct proc_page), dirs_fstat_here ? REGISTER_FSTAT : 0, (long)marks);
}

/* ---- the decision ------------------------------------------------------------------------ */

/* The snapshot's entries, one after the other: a flags byte, the uid that may walk to the point
 * (4 bytes, little-endian; ANY_UID: anyone), the mount's st_dev (8 bytes: E_OWN_DEV, E_LAYERS),
 * the lengths of its four names (2 bytes each), then the names: the point, the host directory it
 * shows ("" when it shows none by a rule; E_LAYERS: the lower layer), and for E_LAYERS the upper
 * layer and the whiteout prefix ("" otherwise), each NUL-terminated.  (The lengths: every path
 * call walks the entries once per component of its name, and a strlen of each name was a sixth
 * of a served stat.) */
#define E_RULE 1u    /* names below the point are the host's HOST/rest, for reading, answers as they are */
#define E_RO 2u      /* a read-only mount: no open, no access for writing */
#define E_NOEXEC 4u  /* no access for executing */
#define E_NODEV 8u   /* open only regular files and directories */
#define E_OWN_DEV 16u /* the module serves every open itself (virtual fds) and shows its own st_dev:
		       * names are walked on the host for stat, access, readlink, realpath only */
#define E_LAYERS 32u /* two host directories shown as one, overlayfs's way (FileSystem.host_layers): a
		      * name is the upper's, else hidden by a whiteout, else the lower's; stat, access
		      * (not for writing), readlink, realpath, getcwd, the xattr reads and opens for
		      * reading (layered_open), directories with the mount's st_dev, statx with umvu's
		      * basic fields */
#define ANY_UID 0xffffffffu

struct entry {
	const char *point, *host, *upper, *wh;
	size_t plen, hlen, ulen, whlen;
	unsigned flags;
	uint32_t uid;
	uint64_t dev;
};

/* The entry at *CUR, which then moves past it; 0 when the snapshot is not well formed. */
static int next_entry(const char **cur, struct entry *e)
{
	const char *c = *cur, *end = (const char *)snap + COUNTER_OFF;
	uint16_t len[4];
	if (c + 21 >= end)
		return 0;
	e->flags = (unsigned char)c[0];
	memcpy(&e->uid, c + 1, 4);
	memcpy(&e->dev, c + 5, 8);
	memcpy(len, c + 13, 8);
	e->point = c + 21, e->plen = len[0];
	e->host = e->point + e->plen + 1, e->hlen = len[1];
	e->upper = e->host + e->hlen + 1, e->ulen = len[2];
	e->wh = e->upper + e->ulen + 1, e->whlen = len[3];
	/* within the snapshot, and each name ends where its length says (a snapshot being rewritten:
	 * the count check after the decision throws it away; here, nothing is read past the end) */
	if (e->wh + e->whlen >= end || e->point[e->plen] || e->host[e->hlen] || e->upper[e->ulen] || e->wh[e->whlen])
		return 0;
	*cur = e->wh + e->whlen + 1;
	return 1;
}

/* Whether P (length n) is A or below it (A of length an; "/" holds everything). */
static int within(const char *p, size_t n, const char *a, size_t an)
{
	if (an == 1 && a[0] == '/')
		return 1;
	return n >= an && memcmp(p, a, an) == 0 && (n == an || p[an] == '/');
}

/* The innermost point at or above the view path V, into E: 1; none: 0; a bad snapshot: -1. */
static int point_of(const char *v, size_t n, struct entry *e)
{
	const char *c = snap->points;
	struct entry x;
	int found = 0;
	for (uint32_t i = 0; i < snap->count; i++) {
		if (!next_entry(&c, &x))
			return -1;
		if (within(v, n, x.point, x.plen) && (!found || x.plen > e->plen))
			*e = x, found = 1;
	}
	return found;
}

/* Whether a point lies strictly below the view path V (a listing of V would miss it): 1, or -1. */
static int point_below(const char *v, size_t n)
{
	const char *c = snap->points;
	struct entry x;
	for (uint32_t i = 0; i < snap->count; i++) {
		if (!next_entry(&c, &x))
			return -1;
		if (x.plen > n && within(x.point, x.plen, v, n))
			return 1;
	}
	return 0;
}

/* The view path of a directory the kernel has at host path H: where the mount whose host
 * directory holds it (the longest) shows it, else H itself (umvu's FdTable.view_of says the
 * same); a layered mount shows its point in each of its two layers, for a directory opened in
 * the view (IN_VIEW: marked), not one opened by its host name.  Into V (of capacity
 * cap), its length; -1: ask umvu (a mount that shows H by no rule). */
static long view_of_host(const char *h, size_t n, char *v, size_t cap, int in_view)
{
	const char *c = snap->points;
	struct entry x, best = {0};
	size_t held = 0; /* the length of the host directory that holds H, BEST's lower or upper */
	int found = 0;
	for (uint32_t i = 0; i < snap->count; i++) {
		if (!next_entry(&c, &x))
			return -1;
		if ((x.flags & E_OWN_DEV) || ((x.flags & E_LAYERS) && !in_view))
			continue;
		if (x.hlen && within(h, n, x.host, x.hlen) && (!found || x.hlen > held))
			best = x, held = x.hlen, found = 1;
		if ((x.flags & E_LAYERS) && x.ulen && within(h, n, x.upper, x.ulen) && (!found || x.ulen > held))
			best = x, held = x.ulen, found = 1;
	}
	if (!found) {
		memcpy(v, h, n + 1);
		return (long)n;
	}
	if (!(best.flags & E_RULE))
		return -1;
	size_t rest = held == 1 ? n : n - held; /* what follows the host directory, "/..." */
	if (best.plen + rest + 1 > cap)
		return -1;
	memcpy(v, best.point, best.plen);
	memcpy(v + best.plen, h + (n - rest), rest);
	v[best.plen + rest] = 0;
	return (long)(best.plen + rest);
}

/* A few dirfds' view paths, so that a walk from a dirfd costs an fstat, not a readlink of /proc
 * (find and tar make most of their calls from one).  An entry holds while the fd names the same
 * directory (st_dev, st_ino) and the snapshot is the one it was made under (its count, and the
 * count of directories moved in mounts).  A directory renamed on the host by someone else keeps
 * its older view path here; only the walk's checks of mount points use it, the call itself is
 * made from the fd.  One user at a time (a signal handler, another thread, a vfork child that
 * finds it busy goes without); fork copies it with the fds it describes. */
#define CACHED 4
#define CACHED_LEN 1024
static struct {
	long fd;
	uint64_t dev, ino, seq, moves;
	int in_view; /* the fd was opened in the view (marks): a layer's directory is the mount's */
	size_t len;
	char view[CACHED_LEN];
} cache[CACHED];
static int cache_busy;
static unsigned cache_next;

static long cache_get(int fd, const struct stat *st, uint64_t seq, uint64_t moves, int in_view, char *view)
{
	long found = -1;
	if (__atomic_exchange_n(&cache_busy, 1, __ATOMIC_ACQUIRE))
		return -1;
	for (int i = 0; i < CACHED; i++)
		if (cache[i].fd == fd && cache[i].dev == st->st_dev && cache[i].ino == st->st_ino && cache[i].seq == seq &&
		    cache[i].moves == moves && cache[i].in_view == in_view && cache[i].len) {
			memcpy(view, cache[i].view, cache[i].len + 1);
			found = (long)cache[i].len;
			break;
		}
	__atomic_store_n(&cache_busy, 0, __ATOMIC_RELEASE);
	return found;
}

static void cache_put(int fd, const struct stat *st, uint64_t seq, uint64_t moves, int in_view, const char *view,
		      size_t len)
{
	if (len >= CACHED_LEN || __atomic_exchange_n(&cache_busy, 1, __ATOMIC_ACQUIRE))
		return;
	unsigned i = cache_next++ % CACHED;
	cache[i].fd = fd, cache[i].dev = st->st_dev, cache[i].ino = st->st_ino, cache[i].seq = seq;
	cache[i].moves = moves, cache[i].in_view = in_view, cache[i].len = len;
	memcpy(cache[i].view, view, len + 1);
	__atomic_store_n(&cache_busy, 0, __ATOMIC_RELEASE);
}

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

/* Write HOST + SUB (the view's rest below the point) + "/" + TAIL into OUT; -1 if too long. */
static int compose(char *out, const struct entry *e, const char *sub, size_t sublen, const char *tail)
{
	size_t tn = strnlen(tail, 4096), n = 0;
	if (e->hlen + sublen + 1 + tn + 1 > 4096)
		return -1;
	memcpy(out, e->host, e->hlen), n = e->hlen;
	memcpy(out + n, sub, sublen), n += sublen;
	if (tn) {
		out[n++] = '/';
		memcpy(out + n, tail, tn), n += tn;
	}
	out[n] = 0;
	return 0;
}

static uint32_t euid(void)
{
	return (uint32_t)sys_raw(SYS_geteuid, 0, 0, 0, 0, 0);
}

/* Pages known readable, per thread: the last four asked about, each with the count below as it
 * was then.  Read access is taken away only by a call that changes the mappings; the wrappers of
 * those (munmap, mprotect, mmap and the rest, below) bump the count before and after the call,
 * which makes every thread ask again.  (Calls glibc makes internally, a free() that unmaps,
 * dlclose, take memory away that a correct program no longer names.) */
static uint64_t maps_changes;
#define KNOWN 4
static __thread struct {
	uintptr_t page;
	uint64_t changes;
} known[KNOWN] __attribute__((tls_model("initial-exec")));
static __thread unsigned known_next __attribute__((tls_model("initial-exec")));

/* Whether the page holding address A can be read: the kernel copies the 8 bytes at A rounded
 * down to 8 (one page) as a signal mask for rt_sigprocmask with a HOW that is no HOW, which then
 * fails with EINVAL having changed nothing, or fails with EFAULT.  The cheapest question to ask
 * (a system call with no walk), and asked once per page while the mappings stay: a name the
 * caller passes is read here before the kernel sees it, and a bad pointer must be EFAULT to the
 * caller, as the kernel says it, not a SIGSEGV here. */
static int readable(uintptr_t a)
{
	uintptr_t pg = a & ~(PAGE - 1);
	uint64_t changes = __atomic_load_n(&maps_changes, __ATOMIC_ACQUIRE);
	for (int i = 0; i < KNOWN; i++)
		if (known[i].page == pg && known[i].changes == changes)
			return 1;
	if (sys_raw(SYS_rt_sigprocmask, -1, (long)(a & ~(uintptr_t)7), 0, 8, 0) == -EFAULT)
		return 0;
	unsigned i = known_next++ % KNOWN;
	known[i].changes = ~(uint64_t)0; /* (a signal handler asking meanwhile leaves no mixed pair) */
	known[i].page = pg;
	known[i].changes = changes;
	return 1;
}

/* Whether the name at P can be read to its end (each page it is on asked once), shorter than
 * PATH_MAX; else it is umvu's (EFAULT, ENAMETOOLONG, as the kernel says them). */
static int name_ok(const char *p)
{
	uintptr_t a = (uintptr_t)p;
	size_t n = 0;
	while (n < 4096) {
		if (!readable(a + n))
			return 0;
		size_t room = PAGE - ((a + n) & (PAGE - 1));
		const char *z = memchr(p + n, 0, room);
		if (z)
			return z - p < 4096;
		n += room;
	}
	return 0;
}

static int marked(int fd, const struct stat *st)
{
	return fd >= 0 && fd < NFDS && marks[fd].ino == st->st_ino && marks[fd].dev == st->st_dev && st->st_ino;
}

/* Whether this process may change the table: not a vfork child, which shares it with its parent
 * (and turned the page off) */
static int marks_mine(void)
{
	return tramp && (__atomic_load_n(&page->flags, __ATOMIC_ACQUIRE) & PROC_ON);
}

/* FD no longer holds what it was opened for (closed, or opened anew outside the layers) */
static void unmark(long fd)
{
	if (fd >= 0 && fd < NFDS && marks[fd].ino && marks_mine())
		marks[fd].dev = marks[fd].ino = 0;
}

/* FD was just opened by libc (or umvu, at a stop, which marks what it hands out in a layer): an
 * older mark of its number that does not name the file it holds goes */
static void recheck_mark(long fd)
{
	struct stat st;
	if (fd >= 0 && fd < NFDS && marks[fd].ino && marks_mine() &&
	    (sys_raw(SYS_newfstatat, fd, (long)"", (long)&st, AT_EMPTY_PATH, 0) != 0 || !marked((int)fd, &st)))
		marks[fd].dev = marks[fd].ino = 0;
}

/* The view path of real directory fd DIRFD (ST: its fstat) into BUF (of capacity CAP): where
 * the kernel has it, seen through the mount whose host directory holds it (view_of_host), or
 * the cache's.  Its length; -1: umvu's.  HOST (4096): room for a readlink. */
static long dir_view(int dirfd, const struct stat *st, uint64_t s1, char *buf, size_t cap, char *host)
{
	uint64_t moves = __atomic_load_n(&snap->moves, __ATOMIC_ACQUIRE);
	int in_view = marked(dirfd, st);
	long v = cache_get(dirfd, st, s1, moves, in_view, buf);
	if (v > 0)
		return v;
	char link[32] = "/proc/self/fd/";
	int i = 14, d = dirfd, digits[12], k = 0;
	do
		digits[k++] = d % 10, d /= 10;
	while (d);
	while (k)
		link[i++] = (char)('0' + digits[--k]);
	link[i] = 0;
	long n = sys_raw(SYS_readlink, (long)link, (long)host, 4096, 0, 0);
	if (n <= 0 || n >= 4096 || host[0] != '/')
		return -1; /* a pipe, a socket, an anonymous file: the kernel's answer, from umvu */
	host[n] = 0;
	if (n >= 10 && memcmp(host + n - 10, " (deleted)", 10) == 0)
		return -1;
	v = view_of_host(host, (size_t)n, buf, cap, in_view);
	if (v <= 0)
		return -1;
	cache_put(dirfd, st, s1, moves, in_view, buf, (size_t)v);
	return v;
}

/* Where the name starts in the view, into BUF (of capacity CAP): "/" for an absolute name, else
 * its cwd (the kernel's, by getcwd, or umvu's, from the page, when umvu keeps it) or its dirfd
 * (where the kernel has it, seen through the mount whose host directory holds it), unless the
 * page says the dirfd is umvu's.  Its length; -1: umvu's.  SCRATCH (4096): room for a readlink. */
static long origin(int dirfd, const char *path, uint32_t pf, uint64_t s1, char *buf, size_t cap, char *scratch)
{
	char *host = scratch;
	size_t len = 1;
	buf[0] = '/', buf[1] = 0;
	if (path[0] != '/' && dirfd == AT_FDCWD) {
		if (pf & PROC_CWD_VIRTUAL) { /* umvu's: the page says where */
			size_t n = page->cwd_len;
			if (n == 0 || n >= sizeof page->cwd || page->moves != __atomic_load_n(&snap->moves, __ATOMIC_ACQUIRE))
				return -1;
			memcpy(buf, (const char *)page->cwd, n);
			buf[n] = 0;
			len = n;
		} else {
			long n = sys_raw(SYS_getcwd, (long)buf, 4097, 0, 0, 0);
			if (n <= 1 || buf[0] != '/')
				return -1; /* removed, or outside the root: umvu answers */
			len = strnlen(buf, 4097);
		}
	} else if (path[0] != '/') {
		if ((pf & PROC_NO_DIRFD) || dirfd < 0 || dirfd >= NFDS || (page->umvus[dirfd / 8] >> (dirfd % 8)) & 1)
			return -1;
		struct stat st;
		if (sys_raw(SYS_newfstatat, dirfd, (long)"", (long)&st, AT_EMPTY_PATH, 0) != 0)
			return -1; /* not an fd: EBADF is umvu's to say */
		if (!S_ISDIR(st.st_mode))
			return -1; /* ENOTDIR, or a virtual fd: umvu's placeholders are never directories */
		long v = dir_view(dirfd, &st, s1, buf, cap, host);
		if (v <= 0)
			return -1;
		len = (size_t)v;
	}
	return (long)len;
}

/* The next component of a name at C (past the slashes before it), its length into *N; NULL at
 * the end.  A walk goes on from the component's end, C + *N. */
static const char *component(const char *c, size_t *n)
{
	while (*c == '/')
		c++;
	const char *end = c;
	while (*end && *end != '/')
		end++;
	*n = (size_t)(end - c);
	return *n ? c : NULL;
}

static int is_dot(const char *c, size_t n)
{
	return n == 1 && c[0] == '.';
}

static int is_dotdot(const char *c, size_t n)
{
	return n == 2 && c[0] == '.' && c[1] == '.';
}

/* The snapshot's and the page's counts, and the page's flags, when the library may decide at all
 * (neither is being written; the session has the fast path on and idle off; the process has a
 * page and no root of its own): 1; else 0, umvu's. */
static int may_decide(uint64_t *s1, uint64_t *p1, uint32_t *pf)
{
	*s1 = __atomic_load_n(&snap->seq, __ATOMIC_ACQUIRE);
	*p1 = __atomic_load_n(&page->seq, __ATOMIC_ACQUIRE);
	*pf = page->flags;
	return !((*s1 & 1) || (*p1 & 1) || (snap->flags & (SNAP_OFF | SNAP_IDLE)) || !(*pf & PROC_ON) ||
		 (*pf & PROC_ROOTED));
}

/* Whether what a decision read still holds: neither count moved since may_decide */
static int unchanged(uint64_t s1, uint64_t p1)
{
	return __atomic_load_n(&snap->seq, __ATOMIC_ACQUIRE) == s1 && __atomic_load_n(&page->seq, __ATOMIC_ACQUIRE) == p1;
}

/* Whether REST (below a layered mount's point: "" or "/a/b") names something the library may look
 * for in the layers itself: no "." or ".." (the kernel would walk one layer's parents, not the
 * view's) and no whiteout's name (the module says no such name exists). */
static int layered_name(const char *rest, const struct entry *e)
{
	size_t n;
	for (const char *c = rest; (c = component(c, &n)) != NULL; c += n)
		if (is_dot(c, n) || is_dotdot(c, n) || (e->whlen && n >= e->whlen && memcmp(c, e->wh, e->whlen) == 0))
			return 0;
	return 1;
}

/* What the call on (DIRFD, PATH) may be made on here:
 *   STOP: nothing, umvu answers (a name that may lead into anything virtual, or is unknown);
 *   AS_IS: the name itself (it meets no mount);
 *   MOVED: the host name written to OUT (the name leads into a mount that shows a host directory
 *          by a rule, whose entry goes to *FOUND; a ".." in it must stay inside the mount).
 * VIEW, when not NULL, gets the name's path in the view, made absolute (origin) and lexically
 * clean. */
#define STOP 0
#define AS_IS 1
#define MOVED 2
#define REFUSED 3 /* as AS_IS, for a name that cannot be read: only the kernel may read it */
static int decide(int dirfd, const char *path, int is_open, char *out, struct entry *found, char *view)
{
	found->flags = 0, found->dev = 0;
	uint64_t s1, p1;
	uint32_t pf;
	if (!tramp || !path || !may_decide(&s1, &p1, &pf))
		return STOP;
	if (!name_ok(path))
		return REFUSED; /* the kernel refuses it before any walk (EFAULT, ENAMETOOLONG): the view's answer */
	if (!path[0])
		return STOP;
	char buf[2 * 4096 + 2], *host = out; /* the host name is made where it is wanted */
	long got = origin(dirfd, path, pf, s1, buf, sizeof buf, out); /* OUT: scratch until then */
	if (got < 0)
		return STOP;
	size_t len = (size_t)got;
	int dotdot = 0, kind = AS_IS, from_fd = path[0] != '/' && dirfd != AT_FDCWD;
	struct entry e, x;
	const char *tail = path;
	int at = point_of(buf, len, &e);
	if (at < 0 || (at && !(e.flags & E_RULE)))
		return STOP;
	if (at) { /* the walk starts inside a mount that shows a host directory */
		kind = MOVED;
		if (compose(host, &e, buf + (e.plen == 1 ? 0 : e.plen), e.plen == 1 ? len : len - e.plen, "") != 0)
			return STOP;
	}
	size_t n;
	for (const char *c = path; (c = component(c, &n)) != NULL;) {
		const char *end = c + n;
		if (is_dotdot(c, n))
			dotdot = 1;
		if (step(buf, &len, c, n, sizeof buf) != 0)
			return STOP;
		if (kind == AS_IS) {
			at = point_of(buf, len, &e);
			if (at < 0 || (at && (!(e.flags & E_RULE) || dotdot)))
				return STOP; /* ".." before a mount: the kernel would not check what it skipped */
			if (at) { /* the name enters a mount that shows a host directory: its rest is there */
				kind = MOVED;
				memcpy(host, e.host, e.hlen + 1);
				tail = end;
			}
		} else if (point_of(buf, len, &x) != 1 || x.point != e.point) {
			/* out of the mount by "..", or into one mounted in it: umvu's to walk. (The rest,
			 * ".." included, the kernel walks on the host as the view would: no symlink is
			 * followed on the way, so ".." is the parent the name shows.) */
			return STOP;
		}
		c = end;
	}
	if (is_open && point_below(buf, len) != 0)
		return STOP;
	if (kind == MOVED) {
		*found = e;
		if (from_fd && tail == path && !(e.flags & E_LAYERS)) {
			kind = AS_IS; /* from a dirfd in the mount: the kernel walks from the fd itself */
		} else { /* (from a dirfd in one of a layered mount's layers: the whole name, looked up in each) */
			if (e.uid != ANY_UID && euid() != e.uid)
				return STOP; /* the walk to the point is the caller's to make */
			if (e.flags & E_LAYERS) /* "." after the start or the point (directories) is no step: ls -R's "./a/b" */
				while (tail[0] == '/' || (tail[0] == '.' && (tail[1] == '/' || !tail[1])))
					tail++;
			size_t hn = strnlen(out, 4096), tn = strnlen(tail, 4096);
			if (hn + 1 + tn + 1 > 4096)
				return STOP;
			if (tn && tail[0] != '/')
				out[hn++] = '/';
			memcpy(out + hn, tail, tn + 1);
		}
	}
	if (kind == MOVED && (e.flags & E_LAYERS) && !layered_name(out + e.hlen, &e))
		return STOP;
	if (view) {
		if (len >= 4096)
			return STOP;
		memcpy(view, buf, len + 1);
	}
	return unchanged(s1, p1) ? kind : STOP; /* the facts read must not have moved meanwhile */
}

/* The host name of the view path V (absolute, clean; length N) into HOST: V itself away from
 * every mount, or its name in the host directory a mount shows by a rule; -1: umvu's (a mount
 * that shows none, or one whose point the caller is not known to be able to walk to). */
static int host_of(const char *v, size_t n, char *host)
{
	struct entry e;
	int at = point_of(v, n, &e);
	if (at < 0 || (at && (!(e.flags & E_RULE) || (e.flags & E_LAYERS))) || (at && e.uid != ANY_UID && euid() != e.uid))
		return -1;
	if (!at) {
		if (n >= 4096)
			return -1;
		memcpy(host, v, n + 1);
		return 0;
	}
	return compose(host, &e, v + (e.plen == 1 ? 0 : e.plen), e.plen == 1 ? n : n - e.plen, "");
}

#define MAX_LINKS 40 /* the kernel's MAXSYMLINKS: one more is ELOOP, umvu's to say */

/* The name (DIRFD, PATH) with the symlinks on its way resolved as the view resolves them (the
 * last one too when FOLLOW), into V (of capacity CAP, at least 4096 + 2): an absolute view
 * path with no ".", ".." or symlink left on the way; 0, or -1: umvu's.  The kernel, told to
 * follow no symlink, refused the name (ELOOP): it holds one, perhaps pointing into a mount (an
 * absolute target is the view's), and merged-/usr systems put one in front of every /lib and
 * /bin name.  Each component is looked at where the view has it (lstat, readlink of its host
 * name, from the trampoline), as the kernel looks at it (search permission on the way, ".."
 * only from a directory one may search); where the kernel would stop with an error (the name is
 * not there, not a directory, not searchable), the rest is left as written, and the call meets
 * the same error on the same component. */
static int resolve(int dirfd, const char *path, int follow, char *v, size_t cap)
{
	uint64_t s1, p1;
	uint32_t pf;
	if (!tramp || !path || !path[0] || !may_decide(&s1, &p1, &pf))
		return -1;
	size_t pn = strnlen(path, 4096);
	if (pn >= 4096 || path[pn - 1] == '/')
		return -1; /* a trailing slash (a directory, a last symlink followed): umvu's */
	char host[4096], todo[4096], link[4096];
	long got = origin(dirfd, path, pf, s1, v, cap, host);
	if (got < 0)
		return -1;
	size_t n = (size_t)got;
	memcpy(todo, path, pn + 1);
	const char *c = todo;
	int links = 0;
	size_t cn;
	while ((c = component(c, &cn)) != NULL) {
		const char *end = c + cn, *after;
		for (after = end; *after == '/'; after++)
			;
		int last = !*after;
		int dots = is_dot(c, cn) || is_dotdot(c, cn);
		if (dots) {
			/* looked up in the directory the walk is in, which one must be able to search; ".." is
			 * the parent the view shows (there is no symlink above) */
			if (host_of(v, n, host) != 0 || sys_raw(SYS_faccessat2, AT_FDCWD, (long)host, X_OK, AT_EACCESS, 0) != 0)
				return -1;
		}
		size_t above = n;
		if (step(v, &n, c, cn, cap) != 0)
			return -1;
		if (dots || (last && !follow)) {
			c = end;
			continue;
		}
		struct stat st;
		if (host_of(v, n, host) != 0)
			return -1;
		long r = sys_raw(SYS_newfstatat, AT_FDCWD, (long)host, (long)&st, AT_SYMLINK_NOFOLLOW, 0);
		if (r != 0 || (!S_ISLNK(st.st_mode) && !last && !S_ISDIR(st.st_mode))) {
			size_t an = strnlen(after, 4096); /* the kernel stops here: the rest as written */
			if (n + 1 + an + 1 > cap)
				return -1;
			if (an) { /* (a missing last component is the name an open creates: no slash after it) */
				v[n++] = '/';
				memcpy(v + n, after, an + 1);
				n += an;
			}
			break;
		}
		if (!S_ISLNK(st.st_mode)) {
			c = end;
			continue;
		}
		if (++links > MAX_LINKS)
			return -1;
		long ln = sys_raw(SYS_readlink, (long)host, (long)link, sizeof link - 1, 0, 0);
		if (ln <= 0 || ln >= (long)sizeof link - 1 || link[ln - 1] == '/')
			return -1; /* a target ending in "/" (it must be a directory): umvu's */
		size_t an = strnlen(after, 4096);
		if ((size_t)ln + 1 + an + 1 > sizeof todo)
			return -1;
		memmove(todo + ln + 1, after, an + 1); /* the target, then what followed the link */
		memcpy(todo, link, (size_t)ln);
		todo[ln] = '/';
		c = todo;
		n = link[0] == '/' ? 1 : above; /* an absolute target starts again from the view's root */
		v[n] = 0;
		if (n == 1)
			v[0] = '/';
	}
	return unchanged(s1, p1) ? 0 : -1;
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

/* libc's function NAME, looked up once (again after libc's own calls were sent here: hook_libc) */
#define REAL(name) static __typeof__(name) *real_##name; \
	static unsigned real_gen_##name; \
	if (!real_##name || real_gen_##name != hooks_gen) \
		real_##name = (__typeof__(name) *)libc_fn(#name), real_gen_##name = hooks_gen

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

/* Where the kernel is to walk the call's name: the name as given, or the host name of a mount. */
struct target {
	int dirfd;
	const char *path;
	unsigned flags; /* the mount's (E_RO...), when the name is a host name of one */
	uint64_t dev;   /* E_OWN_DEV, E_LAYERS: the st_dev to show */
	struct entry e; /* the mount's entry, when the name is in one (it points into the snapshot) */
	uint64_t seq;   /* the snapshot's count before the decision: E stands while it does */
	int refused;    /* the name cannot be read (decide's REFUSED): only the kernel may touch it */
	char buf[4096];
};

/* 1 when the call can be made here, on T's name; 0: umvu's */
static int target(struct target *t, int dirfd, const char *path, int is_open, char *view)
{
	t->seq = tramp ? __atomic_load_n(&snap->seq, __ATOMIC_ACQUIRE) : 0;
	int k = decide(dirfd, path, is_open, t->buf, &t->e, view);
	t->flags = t->e.flags, t->dev = t->e.dev, t->refused = k == REFUSED;
	if (k != STOP && is_open && (t->flags & E_OWN_DEV))
		return 0; /* the module opens it (a virtual fd) */
	if (k == MOVED) {
		t->dirfd = AT_FDCWD, t->path = t->buf;
	} else {
		t->dirfd = dirfd, t->path = path;
	}
	return k != STOP;
}

/* Whether the kernel's answer on a host name is the view's: not where it met a symlink (ELOOP),
 * left the tree (EXDEV) or could not say (ENOSYS, EAGAIN). */
static int kernels(long r)
{
	return !(r == -ELOOP || r == -EXDEV || r == -ENOSYS || r == -EAGAIN);
}

/* Whether a whiteout in the upper layer hides NAME (the upper layer's name for it, the layer's
 * own directory AT long): E's prefix and a component's name, beside that component, for the
 * name and each directory above it.  1, 0, or -1: umvu's (the layer could not be looked at). */
static int whiteout_on_way(const char *name, size_t at, const struct entry *e)
{
	char w[4096 + 256];
	while (name[at] == '/') {
		size_t c = at + 1, end = c;
		while (name[end] && name[end] != '/')
			end++;
		if (end + e->whlen + 1 > sizeof w)
			return -1;
		memcpy(w, name, c);
		memcpy(w + c, e->wh, e->whlen);
		memcpy(w + c + e->whlen, name + c, end - c);
		w[c + e->whlen + (end - c)] = 0;
		long r = sys_raw(SYS_faccessat2, AT_FDCWD, (long)w, F_OK, AT_SYMLINK_NOFOLLOW, 0);
		if (r == 0)
			return 1;
		if (r != -ENOENT && r != -ENOTDIR)
			return -1;
		at = end;
	}
	return 0;
}

/* The layer that holds T's name in a layered mount (E_LAYERS), as the module finds it: the upper
 * one where it has the name; else none, if a whiteout beside the name or beside one of its
 * directories in the upper layer hides it; else the lower one.  It opened there with OFLAGS (an
 * fd or -errno in *FD; *UPPER: whether the upper layer's), 1; 0: umvu's (a symlink, a refusal
 * to look, a change being made meanwhile).  The module changes its layers in several steps (a
 * copy-up, then the call; a rename, then a whiteout), each while serving a call that stops: the
 * snapshot counts those calls, and a look made while one was served is not taken (as umvu serves
 * one call at a time). */
static int layered_at(const struct target *t, long oflags, long mode, long *fd, int *upper)
{
	const struct entry *e = &t->e;
	uint64_t c1 = __atomic_load_n(&snap->changes, __ATOMIC_ACQUIRE);
	if (__atomic_load_n(&snap->changing, __ATOMIC_ACQUIRE))
		return 0;
	const char *rest = t->buf + e->hlen; /* "" (the point) or "/a/b", clean (layered_name) */
	size_t rn = strnlen(rest, 4096);
	char name[4096];
	if (e->ulen + rn + 1 > sizeof name || e->hlen + rn + 1 > sizeof name)
		return 0;
	memcpy(name, e->upper, e->ulen);
	memcpy(name + e->ulen, rest, rn + 1);
	*fd = open_nosym(AT_FDCWD, name, oflags, mode);
	*upper = 1;
	if (*fd == -ENOENT) {
		int hidden = whiteout_on_way(name, e->ulen, e);
		if (hidden < 0)
			return 0;
		if (!hidden) {
			memcpy(name, e->host, e->hlen);
			memcpy(name + e->hlen, rest, rn + 1);
			*fd = open_nosym(AT_FDCWD, name, oflags, mode);
			*upper = 0;
		}
	}
	if (!kernels(*fd) || *fd == -EACCES)
		return 0; /* (a layer the caller may not search: the module's answer, which may differ) */
	if (__atomic_load_n(&snap->changes, __ATOMIC_ACQUIRE) != c1 ||
	    __atomic_load_n(&snap->seq, __ATOMIC_ACQUIRE) != t->seq) { /* (a mount made meanwhile) */
		if (*fd >= 0)
			sys_raw(SYS_close, *fd, 0, 0, 0, 0);
		return 0;
	}
	return 1;
}

/* An O_PATH fd of the layer's object that holds T's name (layered_at) */
static int layered_fd(const struct target *t, int nofollow, long *fd)
{
	int upper;
	return layered_at(t, O_PATH | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0), 0, fd, &upper);
}

/* An O_PATH fd of T's name, walked with no symlink followed (or found in a layered mount's
 * layers); 0 when umvu is to walk it instead (a symlink on the way), else 1 with the fd or
 * -errno in *FD. */
static int path_fd(const struct target *t, int nofollow, long *fd)
{
	if (t->flags & E_LAYERS)
		return layered_fd(t, nofollow, fd);
	*fd = open_nosym(t->dirfd, t->path, O_PATH | O_CLOEXEC | (nofollow ? O_NOFOLLOW : 0), 0);
	return kernels(*fd);
}

/* The name again, its symlinks resolved as the view resolves them (resolve), into T anew (its
 * flags are then the mount's the name ends in), and path_fd on that.  T's path may be the local
 * V: afterwards T is for the call's flags and st_dev only.  Out of line: the names with no
 * symlink do not pay for its frame. */
static __attribute__((noinline)) int path_fd_resolved(struct target *t, int dirfd, const char *path, int nofollow,
						     long *fd, char *view)
{
	char v[4096 + 2];
	if (resolve(dirfd, path, !nofollow, v, sizeof v) != 0 || !target(t, AT_FDCWD, v, 0, view))
		return 0;
	return path_fd(t, nofollow, fd);
}

/* path_fd, and where the kernel met a symlink on the way, path_fd_resolved */
static int path_fd_at(struct target *t, int dirfd, const char *path, int nofollow, long *fd, char *view)
{
	if (path_fd(t, nofollow, fd))
		return 1;
	return *fd == -ELOOP && path_fd_resolved(t, dirfd, path, nofollow, fd, view);
}

/* Whether T's name can be given to the kernel as it is, not followed: one component from the
 * call's own dirfd or cwd (find's and tar's fstatat of each entry, ls -l's lstat), which no walk
 * the kernel makes can take through a symlink, in a mount the library decided it may walk in as
 * the kernel does (not a module's own st_dev, not layers). */
static int one_name(const struct target *t, int nofollow)
{
	return nofollow && !t->refused && !(t->flags & (E_OWN_DEV | E_LAYERS)) && !strchr(t->path, '/');
}

/* Whether a layered mount is published (its directories show its st_dev: layered_dir_dev); the
 * snapshot says it (SNAP_LAYERED), as it says it for native_seen */
static int any_layered(void)
{
	return (snap->flags & SNAP_LAYERED) != 0;
}

/* Whether the name P has no "." or ".." component and no empty one ("//"): as written, it is the
 * path the kernel walks to, lexically. */
static int clean_name(const char *p)
{
	for (const char *c = p; *c; c++) {
		if (c[0] == '/' && c[1] == '/')
			return 0;
		if ((c == p || c[-1] == '/') && c[0] == '.' &&
		    (c[1] == '/' || !c[1] || (c[1] == '.' && (c[2] == '/' || !c[2]))))
			return 0;
	}
	return 1;
}

/* Whether the kernel may be asked about (DIRFD, PATH) first, as it is, symlinks and all
 * (native_seen says afterwards whether its answer is the view's), with the counts to check then
 * in *S1 and *P1.  Where every point but /proc and /sys holds nothing on the host, or an empty
 * directory, or no directory (SNAP_HOLLOW: umvu looked when it published them), a walk the
 * kernel makes that meets a point, by name or through a symlink, fails there (the name is not
 * in it) or ends on what the host has there (held); /proc and /sys must not be met by name (an
 * absolute name under them, a relative one from "/" or from inside them, a ".."), and through
 * a symlink, they show this process's own links as the view does (PROC_PLAIN) and their other
 * files by their st_dev.  What this trusts is in docs/architecture.md. */
static int native_ok(int dirfd, const char *path, uint64_t *s1, uint64_t *p1)
{
	uint32_t pf;
	struct entry e;
	if (!tramp || !path || !may_decide(s1, p1, &pf) || !(snap->flags & SNAP_HOLLOW) || !(pf & PROC_PLAIN) ||
	    !name_ok(path) || !path[0] || !clean_name(path))
		return 0;
	if (path[0] != '/')
		return dirfd == AT_FDCWD && (pf & PROC_CWD_PLAIN);
	return point_of(path, strnlen(path, 4096), &e) == 0;
}

/* Whether the kernel's answer, a file of st_dev DEV, inode INO and mode MODE, is the view's
 * (native_ok): not a file of /proc or /sys, not what the host has at a point, not a layered
 * mount's directory (found through this process's /proc/self/fd) */
static int native_seen(uint64_t dev, uint64_t ino, mode_t mode, uint64_t s1, uint64_t p1)
{
	if (dev == snap->proc_dev || dev == snap->sys_dev || (any_layered() && S_ISDIR(mode)))
		return 0;
	uint32_t n = snap->nheld < HELD ? snap->nheld : HELD;
	for (uint32_t i = 0; i < n; i++)
		if (snap->held[i].dev == dev && snap->held[i].ino == ino)
			return 0;
	return unchanged(s1, p1);
}

/* stat-like: NOFOLLOW or not; the symlinks on the way resolved as the view resolves them */
static int fast_stat(int dirfd, const char *path, struct stat *st, int flags, int *done)
{
	struct target t;
	long fd;
	uint64_t s1, p1;
	*done = 0;
	if (flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT))
		return 0;
	if (native_ok(dirfd, path, &s1, &p1) &&
	    sys_raw(SYS_newfstatat, dirfd, (long)path, (long)st, flags, 0) == 0 &&
	    native_seen(st->st_dev, st->st_ino, st->st_mode, s1, p1)) {
		*done = 1;
		served();
		return 0;
	} /* (else asked again the careful way: an error may be where a point was met) */
	if (!target(&t, dirfd, path, 0, NULL))
		return 0;
	if (one_name(&t, flags & AT_SYMLINK_NOFOLLOW)) { /* one call, not three */
		*done = 1;
		served();
		return (int)ret_errno(sys_raw(SYS_newfstatat, t.dirfd, (long)t.path, (long)st, flags, 0));
	}
	if (!path_fd_at(&t, dirfd, path, flags & AT_SYMLINK_NOFOLLOW, &fd, NULL))
		return 0;
	*done = 1;
	served();
	if (fd < 0)
		return (int)ret_errno(fd);
	long r = sys_raw(SYS_newfstatat, fd, (long)"", (long)st, AT_EMPTY_PATH, 0);
	sys_raw(SYS_close, fd, 0, 0, 0, 0);
	if (r == 0 && ((t.flags & E_OWN_DEV) || ((t.flags & E_LAYERS) && S_ISDIR(st->st_mode))))
		st->st_dev = t.dev; /* the mount's, as umvu shows its module's files, a union's directories */
	return (int)ret_errno(r);
}

/* statx of a module's own file, as umvu shows it (abi.pack_statx): the basic stats and the st_dev
 * umvu shows (the mount's), nothing the module does not know (no birth time, attributes, mount id) */
static void own_statx(struct statx *x, uint64_t dev)
{
	struct statx k = *x;
	memset(x, 0, sizeof *x);
	x->stx_mask = STATX_BASIC_STATS;
	x->stx_blksize = k.stx_blksize, x->stx_nlink = k.stx_nlink, x->stx_uid = k.stx_uid, x->stx_gid = k.stx_gid;
	x->stx_mode = k.stx_mode, x->stx_ino = k.stx_ino, x->stx_size = k.stx_size, x->stx_blocks = k.stx_blocks;
	x->stx_atime = k.stx_atime, x->stx_ctime = k.stx_ctime, x->stx_mtime = k.stx_mtime;
	x->stx_rdev_major = k.stx_rdev_major, x->stx_rdev_minor = k.stx_rdev_minor;
	x->stx_dev_major = major(dev), x->stx_dev_minor = minor(dev);
}

/* The st_dev real directory fd FD shows in the view when it is in a layered mount (opened in a
 * layer: layered_open, or handed out by umvu), else 0.  ST: the kernel's fstat of it. */
static uint64_t layered_dir_dev(int fd, const struct stat *st)
{
	uint64_t s1, p1;
	uint32_t pf;
	struct entry e;
	char view[4096 + 2], host[4096];
	if (fd < 0 || fd >= NFDS || !may_decide(&s1, &p1, &pf) || (page->umvus[fd / 8] >> (fd % 8)) & 1)
		return 0;
	long v = dir_view(fd, st, s1, view, sizeof view, host);
	if (v <= 0 || point_of(view, (size_t)v, &e) != 1 || !(e.flags & E_LAYERS) || !unchanged(s1, p1))
		return 0;
	return e.dev;
}

/* Whether (PATH, FLAGS) names the dirfd itself: fstat's shape */
static int fd_itself(const char *path, int flags)
{
	return (flags & AT_EMPTY_PATH) && path && name_ok(path) && !path[0]; /* (the fd: dir_stat_here) */
}

/* fstat of FD made here while a layered mount is published, when FD is a directory (which no
 * placeholder of a virtual fd is: the fd is real), with the st_dev the view shows (umvu guards
 * the directories it hands out there, so libc's call would stop): 1; 0, libc's call.  The
 * kernel writes into ST: a bad pointer is its EFAULT, and then libc's answer. */
static int dir_stat_here(int fd, struct stat *st, int flags)
{
	uint64_t s1, p1;
	uint32_t pf;
	if (fd < 0 || fd >= NFDS || !tramp || !may_decide(&s1, &p1, &pf) || (page->umvus[fd / 8] >> (fd % 8)) & 1 ||
	    !any_layered() || sys_raw(SYS_newfstatat, fd, (long)"", (long)st, flags, 0) != 0 || !S_ISDIR(st->st_mode))
		return 0; /* (AT_FDCWD: the cwd may be umvu's; a directory umvu handed out by no rule: its guard) */
	uint64_t dev = layered_dir_dev(fd, st);
	if (dev)
		st->st_dev = dev;
	served();
	return 1;
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	int done, r = fast_stat(dirfd, path, st, flags, &done);
	if (done)
		return r;
	if (fd_itself(path, flags) && dir_stat_here(dirfd, st, flags))
		return 0;
	REAL(fstatat);
	return real_fstatat(dirfd, path, st, flags);
}

int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags)
{
	return fstatat(dirfd, path, (struct stat *)st, flags); /* the same struct on x86-64 */
}

int stat(const char *path, struct stat *st)
{
	return fstatat(AT_FDCWD, path, st, 0); /* glibc's stat is the same call (2.33 and later: stat exists) */
}

int stat64(const char *path, struct stat64 *st)
{
	return stat(path, (struct stat *)st);
}

int lstat(const char *path, struct stat *st)
{
	return fstatat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

int lstat64(const char *path, struct stat64 *st)
{
	return lstat(path, (struct stat *)st);
}

/* The stat ABI of programs built before glibc 2.33 (GNU make among them): the same calls, with a
 * version that is 1 (_STAT_VER_LINUX: the kernel's struct stat) on x86-64 */
#define STAT_VER 1

int __xstat(int ver, const char *path, struct stat *st)
TAKE(int, ver == STAT_VER ? fast_stat(AT_FDCWD, path, st, 0, &done) : (done = 0), __xstat, ver, path, st)

int __lxstat(int ver, const char *path, struct stat *st)
TAKE(int, ver == STAT_VER ? fast_stat(AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW, &done) : (done = 0), __lxstat, ver,
     path, st)

int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
TAKE(int, ver == STAT_VER ? fast_stat(dirfd, path, st, flags, &done) : (done = 0), __fxstatat, ver, dirfd, path, st,
     flags)

int __xstat64(int ver, const char *path, struct stat64 *st) __attribute__((alias("__xstat")));
int __lxstat64(int ver, const char *path, struct stat64 *st) __attribute__((alias("__lxstat")));
int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
	__attribute__((alias("__fxstatat")));

/* their fstat is the kernel's fstat(2), past libc's fstatat: a directory of a layered mount as
 * the library shows it (dir_stat_here) */
extern int __fxstat(int ver, int fd, struct stat *st); /* glibc's (compatibility): its type only */

int __fxstat(int ver, int fd, struct stat *st)
{
	if (ver == STAT_VER && dir_stat_here(fd, st, AT_EMPTY_PATH))
		return 0;
	REAL(__fxstat);
	return real___fxstat(ver, fd, st);
}

int __fxstat64(int ver, int fd, struct stat64 *st) __attribute__((alias("__fxstat")));

int statx(int dirfd, const char *path, int flags, unsigned int mask, struct statx *stx)
{
	struct target t;
	long fd;
	uint64_t s1, p1;
	int ok = !(flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_STATX_SYNC_TYPE)) && !(mask & STATX__RESERVED);
	if (ok && native_ok(dirfd, path, &s1, &p1) && sys_raw(SYS_statx, dirfd, (long)path, flags, mask, (long)stx) == 0 &&
	    native_seen(makedev(stx->stx_dev_major, stx->stx_dev_minor), stx->stx_ino, stx->stx_mode, s1, p1)) {
		served(); /* (as fast_stat) */
		return 0;
	}
	ok = ok && target(&t, dirfd, path, 0, NULL);
	if (ok && one_name(&t, flags & AT_SYMLINK_NOFOLLOW)) { /* one call, not three */
		served();
		return (int)ret_errno(sys_raw(SYS_statx, t.dirfd, (long)t.path, flags, mask, (long)stx));
	}
	if (ok && path_fd_at(&t, dirfd, path, flags & AT_SYMLINK_NOFOLLOW, &fd, NULL)) {
		served();
		if (fd < 0)
			return (int)ret_errno(fd);
		int own = t.flags & (E_OWN_DEV | E_LAYERS); /* umvu's statx from the module's lstat */
		long r = sys_raw(SYS_statx, fd, (long)"", AT_EMPTY_PATH | (flags & AT_STATX_SYNC_TYPE),
				 own ? STATX_BASIC_STATS : mask, (long)stx);
		sys_raw(SYS_close, fd, 0, 0, 0, 0);
		if (r == 0 && own)
			own_statx(stx, (t.flags & E_OWN_DEV) || S_ISDIR(stx->stx_mode) ? t.dev
								: makedev(stx->stx_dev_major, stx->stx_dev_minor));
		return (int)ret_errno(r);
	}
	uint32_t pf;
	if (fd_itself(path, flags) && dirfd >= 0 && dirfd < NFDS && tramp && may_decide(&s1, &p1, &pf) &&
	    !((page->umvus[dirfd / 8] >> (dirfd % 8)) & 1) && any_layered() && !(mask & STATX__RESERVED) &&
	    sys_raw(SYS_statx, dirfd, (long)path, flags, mask, (long)stx) == 0 && S_ISDIR(stx->stx_mode)) {
		/* a directory: a real fd (as dir_stat_here) */
		struct stat st = {.st_mode = stx->stx_mode, .st_ino = stx->stx_ino,
				  .st_dev = makedev(stx->stx_dev_major, stx->stx_dev_minor)};
		uint64_t dev = layered_dir_dev(dirfd, &st);
		if (dev)
			own_statx(stx, dev); /* as umvu's statx of a layered mount's directory */
		served();
		return 0;
	}
	REAL(statx);
	return real_statx(dirfd, path, flags, mask, stx);
}

static int fast_access(int dirfd, const char *path, int mode, int flags, int *done)
{
	struct target t;
	long fd;
	*done = 0;
	if ((mode & ~(R_OK | W_OK | X_OK)) || (flags & ~(AT_SYMLINK_NOFOLLOW | AT_EACCESS)) ||
	    !target(&t, dirfd, path, 0, NULL) ||
	    !path_fd_at(&t, dirfd, path, flags & AT_SYMLINK_NOFOLLOW, &fd, NULL))
		return 0;
	if (((t.flags & (E_RO | E_LAYERS)) && (mode & W_OK)) || ((t.flags & E_NOEXEC) && (mode & X_OK))) {
		if (fd >= 0)
			sys_raw(SYS_close, fd, 0, 0, 0, 0);
		return 0; /* EROFS, or EACCES: the mount's; a lower file's copy would be writable: umvu's */
	}
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

/* access by the effective ids (make's eaccess) */
int euidaccess(const char *path, int mode)
TAKE(int, fast_access(AT_FDCWD, path, mode, AT_EACCESS, &done), euidaccess, path, mode)

int eaccess(const char *path, int mode) __attribute__((alias("euidaccess")));

static ssize_t fast_readlink(int dirfd, const char *path, char *buf, size_t size, int *done)
{
	struct target t;
	long fd;
	*done = 0;
	if (size == 0 || size > INT_MAX || !target(&t, dirfd, path, 0, NULL) || !path_fd_at(&t, dirfd, path, 1, &fd, NULL))
		return 0; /* (a size the kernel refuses before it reads the name: its EINVAL, by umvu) */
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

/* An open that may change the file system: it writes, truncates or creates */
#define WRITES(f) (((f) & O_ACCMODE) != O_RDONLY || NEEDS_MODE(f) || ((f) & O_TRUNC))

/* The open for reading of T's name in a layered mount, where the module would hand out that
 * layer's own file: the upper layer's file, or the lower layer's file or directory (a directory
 * only the lower layer has holds no whiteout and no upper entry: its listing is the mount's).  A
 * lower file's fd must not change it: while a layered mount is published fchmod & co. stop in
 * every process, and reach the module by the fd's host name (FastPath.place_of).  An upper
 * directory may be a union, which the module lists: umvu's, unless only a name is held (O_PATH);
 * so is every directory when fstat would not reach the library (dirs_fstat_here).  1 with the
 * fd or -errno in *FD; 0: umvu's. */
static int layered_open(const struct target *t, int flags, mode_t mode, long *fd)
{
	int upper;
	struct stat st;
	if (!(__atomic_load_n(&page->flags, __ATOMIC_ACQUIRE) & PROC_GUARDED))
		return 0; /* a lower file's fchmod would not stop yet: the layer is being stacked */
	if ((snap->flags & SNAP_DEVICES) || (t->flags & E_NODEV)) { /* as open_target's check */
		long p;
		if (!layered_at(t, O_PATH | O_CLOEXEC | (flags & O_NOFOLLOW), 0, &p, &upper))
			return 0;
		if (p < 0) {
			*fd = p;
			return 1;
		}
		long r = sys_raw(SYS_newfstatat, p, (long)"", (long)&st, AT_EMPTY_PATH, 0);
		sys_raw(SYS_close, p, 0, 0, 0, 0);
		if (r != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
			return 0;
	}
	if (!layered_at(t, flags | O_LARGEFILE, mode, fd, &upper))
		return 0;
	if (*fd == -EINVAL)
		return 0; /* flags openat would ignore and openat2 refuses */
	if (*fd < 0)
		return 1;
	if (*fd < NFDS && sys_raw(SYS_newfstatat, *fd, (long)"", (long)&st, AT_EMPTY_PATH, 0) == 0 &&
	    (!S_ISDIR(st.st_mode) || (dirs_fstat_here && (!upper || (flags & O_PATH))))) {
		marks[*fd].dev = st.st_dev, marks[*fd].ino = st.st_ino; /* (no fd beyond the table: umvu's) */
		return 1;
	}
	sys_raw(SYS_close, *fd, 0, 0, 0, 0);
	return 0;
}

/* The open of T's name: 1 with the fd or -errno in *FD; 0: umvu's (*FD: -ELOOP when the kernel
 * met a symlink on the way) */
static int open_target(const struct target *t, int flags, mode_t mode, long *fd)
{
	*fd = 0;
	if (t->flags & E_RO)
		return 0; /* umvu guards what a read-only mount hands out (fchmod & co. on the fd) */
	if (WRITES(flags) && t->flags)
		return 0; /* in a mount, a write or a create is the module's (copy-up, records, its umask) */
	if (t->flags & E_LAYERS)
		return layered_open(t, flags, mode, fd);
	if ((snap->flags & SNAP_DEVICES) || (t->flags & E_NODEV)) {
		/* a node whose number a module serves is the module's to open; nodev: EACCES, umvu's */
		long p = open_nosym(t->dirfd, t->path, O_PATH | O_CLOEXEC | (flags & O_NOFOLLOW), 0);
		if (p < 0) {
			*fd = p;
			return 0;
		}
		struct stat st;
		long r = sys_raw(SYS_newfstatat, p, (long)"", (long)&st, AT_EMPTY_PATH, 0);
		sys_raw(SYS_close, p, 0, 0, 0, 0);
		if (r != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))
			return 0;
	}
	*fd = open_nosym(t->dirfd, t->path, flags | O_LARGEFILE, mode);
	unmark(*fd); /* (outside the layers: its number's mark is older) */
	/* EINVAL: flags openat would ignore and openat2 refuses */
	return !(*fd == -ELOOP || *fd == -EXDEV || *fd == -ENOSYS || *fd == -EAGAIN || *fd == -EINVAL);
}

/* open_target of the name with its symlinks resolved as the view resolves them (resolve); an
 * exclusive create does not follow its last component (a symlink there: EEXIST, the kernel's) */
static __attribute__((noinline)) int open_resolved(struct target *t, int dirfd, const char *path, int flags,
						  mode_t mode, long *fd)
{
	char v[4096 + 2];
	int follow = !(flags & O_NOFOLLOW) && (flags & (O_CREAT | O_EXCL)) != (O_CREAT | O_EXCL);
	if (resolve(dirfd, path, follow, v, sizeof v) != 0 || !target(t, AT_FDCWD, v, 1, NULL))
		return 0;
	return open_target(t, flags, mode, fd);
}

/* open of a host file: for reading; away from every mount, for writing and creating too (the
 * kernel's umask is the view's: umvu notes umask(2) and lets the kernel make it), in a mount
 * those are umvu's (open_target); a symlink on the way resolved as the view resolves it */
static int fast_open(int dirfd, const char *path, int flags, mode_t mode, int *done)
{
	struct target t;
	long fd;
	*done = 0;
	if (!target(&t, dirfd, path, 1, NULL))
		return 0;
	if (!open_target(&t, flags, mode, &fd) && (fd != -ELOOP || !open_resolved(&t, dirfd, path, flags, mode, &fd)))
		return 0;
	*done = 1;
	served();
	return (int)ret_errno(fd);
}

int openat(int dirfd, const char *path, int flags, ...)
{
	mode_t mode = MODE_ARG(flags);
	int done, r = fast_open(dirfd, path, flags, mode, &done);
	if (done)
		return r;
	REAL(openat);
	r = real_openat(dirfd, path, flags, mode);
	recheck_mark(r);
	return r;
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));

int open(const char *path, int flags, ...)
{
	mode_t mode = MODE_ARG(flags);
	return openat(AT_FDCWD, path, flags, mode); /* glibc's open is the same call */
}

int open64(const char *path, int flags, ...) __attribute__((alias("open")));

/* _FORTIFY_SOURCE's entry points (tar calls these): open with no mode argument, which is glibc's
 * to refuse (it aborts the program) when the flags need one */
#define FORTIFIED(name, dirfd, ...) \
	{ \
		if (NEEDS_MODE(flags)) { \
			REAL(name); \
			return real_##name(__VA_ARGS__); \
		} \
		return openat(dirfd, path, flags); \
	}

int __open_2(const char *path, int flags)
FORTIFIED(__open_2, AT_FDCWD, path, flags)

int __open64_2(const char *path, int flags)
FORTIFIED(__open64_2, AT_FDCWD, path, flags)

int __openat_2(int dirfd, const char *path, int flags)
FORTIFIED(__openat_2, dirfd, dirfd, path, flags)

int __openat64_2(int dirfd, const char *path, int flags)
FORTIFIED(__openat64_2, dirfd, dirfd, path, flags)

/* ---- xattrs: ls -l asks two of every file it lists (SELinux's label, the ACL) --------------
 * The kernel has no xattr call on an O_PATH fd, but from Linux 6.13 it has them relative to a
 * dirfd (getxattrat, listxattrat): the leaf of the name is asked from an O_PATH fd of its
 * directory, which the kernel opened walking no symlink.  A leaf that is a symlink to follow, a
 * symlink on the way, and a kernel without those calls (ENOSYS): umvu's. */
#define NR_getxattrat 464
#define NR_listxattrat 465

struct xattr_args_ {
	uint64_t value;
	uint32_t size, flags;
};

/* The directory of T's name as a dirfd (*DIR: T's own dirfd for a name of one component, else an
 * O_PATH fd to close, or -errno when the kernel refused the walk: the call's answer) and where
 * the leaf starts in T's path (*LEAF).  1 when the call may be made from there; 0: umvu's. */
static int leaf_of(const struct target *t, int follow, long *dir, size_t *leaf)
{
	char parent[4096];
	if (t->refused || (t->flags & (E_OWN_DEV | E_LAYERS)))
		return 0;
	size_t n = strnlen(t->path, sizeof parent);
	if (n == 0 || n >= sizeof parent || t->path[n - 1] == '/')
		return 0;
	const char *slash = memrchr(t->path, '/', n);
	size_t l = slash ? (size_t)(slash - t->path) + 1 : 0;
	if (is_dot(t->path + l, n - l) || is_dotdot(t->path + l, n - l))
		return 0;
	*leaf = l;
	if (!slash) {
		*dir = t->dirfd;
	} else {
		memcpy(parent, t->path, l);
		parent[l] = 0;
		*dir = open_nosym(t->dirfd, parent, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
		if (!kernels(*dir))
			return 0;
		if (*dir < 0)
			return 1;
	}
	if (follow) { /* a symlink's target is walked as the view walks it: umvu's */
		struct stat st;
		if (sys_raw(SYS_newfstatat, *dir, (long)(t->path + l), (long)&st, AT_SYMLINK_NOFOLLOW, 0) == 0 &&
		    S_ISLNK(st.st_mode)) {
			if (slash)
				sys_raw(SYS_close, *dir, 0, 0, 0, 0);
			return 0;
		}
	}
	return 1;
}

/* getxattrat or (LIST) listxattrat of (DIR, LEAF) */
static long xattr_at(long dir, const char *leaf, long at, const char *name, void *value, size_t size, int list)
{
	if (list)
		return sys_raw(NR_listxattrat, dir, (long)leaf, at, (long)value, (long)size);
	struct xattr_args_ a = {.value = (uintptr_t)value, .size = (uint32_t)size, .flags = 0};
	return sys_raw6(NR_getxattrat, dir, (long)leaf, at, (long)name, (long)&a, sizeof a);
}

/* An xattr call on T's name in a layered mount: in the layer that holds it (layered_at), from
 * its directory there, opened with no symlink followed (the kernel has no xattr call on an
 * O_PATH fd of the name itself).  1 with the answer in *R; 0: umvu's (the point itself, a
 * symlink to follow, a kernel without the calls). */
static int layered_xattr(const struct target *t, int follow, const char *name, void *value, size_t size, int list,
			 long *r)
{
	const struct entry *e = &t->e;
	const char *rest = t->buf + e->hlen;
	size_t rn = strnlen(rest, 4096);
	char host[4096];
	long fd;
	int upper;
	if (rn == 0 || !layered_at(t, O_PATH | O_CLOEXEC | (follow ? 0 : O_NOFOLLOW), 0, &fd, &upper))
		return 0;
	if (fd < 0) {
		*r = fd;
		return 1;
	}
	sys_raw(SYS_close, fd, 0, 0, 0, 0);
	size_t ln = upper ? e->ulen : e->hlen;
	if (ln + rn + 1 > sizeof host)
		return 0;
	memcpy(host, upper ? e->upper : e->host, ln);
	memcpy(host + ln, rest, rn + 1);
	char *slash = strrchr(host, '/');
	*slash = 0; /* (REST begins with one) */
	long dir = open_nosym(AT_FDCWD, host, O_PATH | O_DIRECTORY | O_CLOEXEC, 0);
	if (dir < 0)
		return 0; /* (changed meanwhile) */
	*r = xattr_at(dir, slash + 1, follow ? 0 : AT_SYMLINK_NOFOLLOW, name, value, size, list);
	sys_raw(SYS_close, dir, 0, 0, 0, 0);
	return *r != -ENOSYS;
}

/* getxattr (FOLLOW) and lgetxattr; listxattr and llistxattr (LIST: NAME is not used) */
static ssize_t fast_xattr(const char *path, const char *name, void *value, size_t size, int follow, int list,
			  int *done)
{
	struct target t;
	long dir, r;
	size_t leaf;
	*done = 0;
	if (size > UINT32_MAX || !target(&t, AT_FDCWD, path, 0, NULL))
		return 0;
	if (t.refused) { /* a name that cannot be read: the kernel's answer to the call as it is */
		*done = 1;
		served();
		long nr = list ? (follow ? SYS_listxattr : SYS_llistxattr) : (follow ? SYS_getxattr : SYS_lgetxattr);
		return ret_errno(list ? sys_raw(nr, (long)path, (long)value, (long)size, 0, 0)
				      : sys_raw(nr, (long)path, (long)name, (long)value, (long)size, 0));
	}
	if (t.flags & E_LAYERS) {
		if (!layered_xattr(&t, follow, name, value, size, list, &r))
			return 0;
		*done = 1;
		served();
		return ret_errno(r);
	}
	if (!leaf_of(&t, follow, &dir, &leaf))
		return 0;
	if (dir < 0 && dir != AT_FDCWD) {
		r = dir;
	} else {
		r = xattr_at(dir, t.path + leaf, follow ? 0 : AT_SYMLINK_NOFOLLOW, name, value, size, list);
		if (leaf)
			sys_raw(SYS_close, dir, 0, 0, 0, 0);
		if (r == -ENOSYS)
			return 0;
	}
	*done = 1;
	served();
	return ret_errno(r);
}

ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
TAKE(ssize_t, fast_xattr(path, name, value, size, 1, 0, &done), getxattr, path, name, value, size)

ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
TAKE(ssize_t, fast_xattr(path, name, value, size, 0, 0, &done), lgetxattr, path, name, value, size)

ssize_t listxattr(const char *path, char *list, size_t size)
TAKE(ssize_t, fast_xattr(path, NULL, list, size, 1, 1, &done), listxattr, path, list, size)

ssize_t llistxattr(const char *path, char *list, size_t size)
TAKE(ssize_t, fast_xattr(path, NULL, list, size, 0, 1, &done), llistxattr, path, list, size)

/* realpath: glibc's reads each link with an internal readlink, which stops (gcc asks it of every
 * header it opens).  A name the kernel walks to with no symlink on the way is its own real path:
 * the view's path, made absolute and lexically clean, once the walk succeeded. */
#include <limits.h>

static char *fast_realpath(const char *path, char *resolved, int *done)
{
	struct target t;
	char view[4096];
	long fd;
	*done = 0;
	if (!target(&t, AT_FDCWD, path, 0, view) || !path_fd_at(&t, AT_FDCWD, path, 0, &fd, view))
		return NULL;
	*done = 1;
	served();
	if (fd < 0) {
		errno = (int)-fd;
		return NULL;
	}
	sys_raw(SYS_close, fd, 0, 0, 0, 0);
	size_t n = strnlen(view, sizeof view);
	char *out = resolved ? resolved : malloc(n + 1);
	if (!out) {
		errno = ENOMEM;
		return NULL;
	}
	memcpy(out, view, n + 1);
	return out;
}

char *realpath(const char *path, char *resolved)
TAKE(char *, fast_realpath(path, resolved, &done), realpath, path, resolved)

char *canonicalize_file_name(const char *path)
TAKE(char *, fast_realpath(path, NULL, &done), canonicalize_file_name, path)

char *__realpath_chk(const char *path, char *resolved, size_t resolvedlen)
{
	int done;
	char *r = resolvedlen >= PATH_MAX ? fast_realpath(path, resolved, &done) : (done = 0, NULL);
	if (done)
		return r;
	REAL(__realpath_chk);
	return real___realpath_chk(path, resolved, resolvedlen);
}

/* getcwd: a cwd of umvu's (in a mount) is the page's, while the kernel walks to it (a cwd
 * removed meanwhile is ENOENT, as umvu says); a cwd that is the kernel's (no chroot) is the
 * kernel's answer, asked from the trampoline. */
char *getcwd(char *buf, size_t size)
{
	struct target t;
	char view[4096];
	long fd;
	int have = 0;
	uint32_t pf = tramp ? page->flags : 0;
	if ((pf & PROC_ON) && !(pf & (PROC_ROOTED | PROC_CWD_VIRTUAL))) {
		long n = sys_raw(SYS_getcwd, (long)view, sizeof view, 0, 0, 0);
		have = n > 0 && view[0] == '/'; /* else unreachable, removed, too long: glibc's answer */
	} else if ((pf & PROC_ON) && target(&t, AT_FDCWD, ".", 0, view) && path_fd(&t, 0, &fd)) {
		if (fd < 0) {
			served();
			errno = (int)-fd;
			return NULL;
		}
		sys_raw(SYS_close, fd, 0, 0, 0, 0);
		have = 1;
	}
	if (!have) {
		REAL(getcwd);
		return real_getcwd(buf, size);
	}
	served();
	size_t n = strnlen(view, sizeof view);
	if (buf && size < n + 1) {
		errno = size ? ERANGE : EINVAL;
		return NULL;
	}
	if (!buf) {
		if (!(buf = malloc(size > n ? size : n + 1))) {
			errno = ENOMEM;
			return NULL;
		}
		memcpy(buf, view, n + 1);
		return buf;
	}
	/* the caller's buffer, written as the kernel writes it: a bad one is EFAULT, not a SIGSEGV */
	struct iovec here = {view, n + 1}, there = {buf, n + 1};
	long pid = sys_raw(SYS_getpid, 0, 0, 0, 0, 0);
	if (sys_raw(SYS_process_vm_writev, pid, (long)&here, 1, (long)&there, 1) != (long)(n + 1)) {
		errno = EFAULT;
		return NULL;
	}
	return buf;
}

/* ---- listings and closes of real directories --------------------------------------------------
 * A number a virtual fd once had keeps its filter layer, and every later call naming it stops: a
 * real directory's listing and close too (find and tar read and close each directory on a number
 * a union's fd had in a cow mount, thousands of stops).  No placeholder of a virtual fd is a
 * directory: a listing of one is ENOTDIR, which sends the call to libc (and umvu); the close of
 * a real directory is the kernel's alone (umvu checks the fds it handed out by their /proc
 * names before each use).  Made here while the library may decide (no fake root's records,
 * which list and close nothing of their own either way). */
extern ssize_t getdents64(int fd, void *buf, size_t n); /* glibc's (2.30): its type only */
extern int __close_nocancel(int fd);                  /* glibc's (GLIBC_PRIVATE): its type only */

static ssize_t getdents_here(int fd, void *buf, size_t n)
{
	uint64_t s1, p1;
	uint32_t pf;
	if (tramp && may_decide(&s1, &p1, &pf)) {
		long r = sys_raw(SYS_getdents64, fd, (long)buf, (long)(n > INT_MAX ? INT_MAX : n), 0, 0);
		if (r != -ENOTDIR) {
			served();
			return ret_errno(r);
		}
	}
	REAL(getdents64);
	return real_getdents64(fd, buf, n);
}

/* Whether FD is a real directory (then the kernel may close it for the caller, here) */
static int real_dir(int fd)
{
	uint64_t s1, p1;
	uint32_t pf;
	struct stat st;
	return fd >= 0 && fd < NFDS && tramp && may_decide(&s1, &p1, &pf) && !((page->umvus[fd / 8] >> (fd % 8)) & 1) &&
	       any_layered() && sys_raw(SYS_newfstatat, fd, (long)"", (long)&st, AT_EMPTY_PATH, 0) == 0 &&
	       S_ISDIR(st.st_mode); /* (one umvu handed out by no rule is its own: its copies are guarded) */
}

/* The close of FD made here when it is a real directory (real_dir): 1 with the answer in *R; 0,
 * libc's.  Its mark goes either way. */
static int close_here(int fd, int *r)
{
	unmark(fd);
	if (!real_dir(fd))
		return 0;
	served();
	*r = (int)ret_errno(sys_raw(SYS_close, fd, 0, 0, 0, 0));
	return 1;
}

static int close_nocancel(int fd)
{
	int r;
	if (close_here(fd, &r))
		return r;
	REAL(__close_nocancel);
	return real___close_nocancel(fd);
}

int close(int fd)
{
	int r;
	if (close_here(fd, &r))
		return r;
	REAL(close);
	return real_close(fd);
}

/* ---- copies of an fd: a copy of one opened in the view is the view's too (marks) ------------
 * fts (find, rm -r) keeps its directory fds as copies made by fcntl(F_DUPFD_CLOEXEC); the copy
 * holds the same file, so the mark of the original goes with it (an unmarked one, or one of a
 * number since used again, makes the copy's mark hold nothing: it matches no file). */
static void copy_mark(int from, long to)
{
	if (from >= 0 && from < NFDS && to >= 0 && to < NFDS && to != from && marks_mine())
		marks[to] = marks[from];
}

int dup(int fd)
{
	REAL(dup);
	int r = real_dup(fd);
	copy_mark(fd, r);
	return r;
}

int dup2(int fd, int fd2)
{
	REAL(dup2);
	int r = real_dup2(fd, fd2);
	copy_mark(fd, r);
	return r;
}

int dup3(int fd, int fd2, int flags)
{
	REAL(dup3);
	int r = real_dup3(fd, fd2, flags);
	copy_mark(fd, r);
	return r;
}

int fcntl(int fd, int cmd, ...)
{
	va_list ap;
	va_start(ap, cmd);
	long arg = va_arg(ap, long); /* (every command's argument is a word: an int or a pointer) */
	va_end(ap);
	int dup = cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC, r;
	if ((dup || cmd == F_GETFL || cmd == F_SETFL) && dirs_fstat_here && real_dir(fd)) {
		/* (a copy made unseen: fchmod & co. stop everywhere while a layered mount is published,
		 * and this process's fstat of a directory is the library's) */
		served();
		r = (int)ret_errno(sys_raw(SYS_fcntl, fd, cmd, arg, 0, 0));
	} else {
		REAL(fcntl);
		r = real_fcntl(fd, cmd, arg);
	}
	if (dup)
		copy_mark(fd, r);
	return r;
}

int fcntl64(int fd, int cmd, ...) __attribute__((alias("fcntl")));

/* ---- the calls that can take read access away (see readable) ------------------------------ */

#include <sys/shm.h>

static void maps_changed(void)
{
	__atomic_fetch_add(&maps_changes, 1, __ATOMIC_ACQ_REL);
}

/* BODY between two bumps of the count: a thread that asked meanwhile asks again */
#define AROUND(type, name, ...) \
	{ \
		REAL(name); \
		maps_changed(); \
		type r = real_##name(__VA_ARGS__); \
		maps_changed(); \
		return r; \
	}

int munmap(void *addr, size_t len)
AROUND(int, munmap, addr, len)

int mprotect(void *addr, size_t len, int prot)
AROUND(int, mprotect, addr, len, prot)

int pkey_mprotect(void *addr, size_t len, int prot, int pkey)
AROUND(int, pkey_mprotect, addr, len, prot, pkey)

int madvise(void *addr, size_t len, int advice)
AROUND(int, madvise, addr, len, advice)

void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
AROUND(void *, mmap, addr, len, prot, flags, fd, off)

void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off64_t off) __attribute__((alias("mmap")));

void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	void *to = (flags & MREMAP_FIXED) ? va_arg(ap, void *) : NULL;
	va_end(ap);
	REAL(mremap);
	maps_changed();
	void *r = real_mremap(old, old_len, new_len, flags, to);
	maps_changed();
	return r;
}

int brk(void *end)
AROUND(int, brk, end)

void *sbrk(intptr_t delta)
AROUND(void *, sbrk, delta)

int shmdt(const void *addr)
AROUND(int, shmdt, addr)

/* ---- libc's own calls ----------------------------------------------------------------------
 * LD_PRELOAD reaches the calls a program makes through the PLT, not those libc makes itself:
 * fopen's and mkstemp's open, opendir's, setlocale's and gettext's (__open_nocancel), the stat
 * under stat, lstat and fstat.  Those reach a few functions whose address is also an exported
 * symbol's (a hidden alias is the same code).  Their first instructions are made a jump to the
 * wrapper here, and the instructions it covers are copied out, followed by a jump back, for the
 * wrapper's own fallback (REAL): a hooked function's behaviour is libc's whenever the library
 * does not take the call.  Only first instructions a small decoder knows to run anywhere are
 * moved (no rip-relative operand, no branch): else that function is left alone.  Nothing may
 * jump into the bytes the jump covers: tests/test_fastpath.py checks libc's code for that.
 * Made in the constructor, before main, only while glibc says no thread was ever made (another
 * thread could be inside the bytes being changed), with every signal blocked; the moved copy is
 * what REAL returns before the first byte changes.  A function whose next definition after this
 * library is not libc's (another preloaded library's wrapper, which would call libc's and come
 * back here) is left alone.  UMVU_FAST_LIBC=0: not made. */

static int open_nocancel(const char *path, int flags, ...);
static ssize_t getdents_here(int fd, void *buf, size_t n);
static int close_nocancel(int fd);
extern int __open_nocancel(const char *path, int flags, ...); /* glibc's (GLIBC_PRIVATE): its type only */

/* the wrappers of this file, not a definition of the same name the program itself exports */
extern __typeof__(fstatat) fstatat_here __attribute__((alias("fstatat"), visibility("hidden"), copy(fstatat)));
extern __typeof__(openat) openat_here __attribute__((alias("openat"), visibility("hidden"), copy(openat)));
extern __typeof__(open) open_here __attribute__((alias("open"), visibility("hidden"), copy(open)));

static struct hook {
	const char *name; /* libc's symbol */
	void *ours;
	void *entry; /* libc's, which jumps to OURS once hooked */
	void *orig;  /* the moved first instructions and a jump back: libc's function, once hooked */
} hooks[] = {
	{"fstatat", (void *)fstatat_here, NULL, NULL}, /* stat, lstat, fstat, fstatat: glibc 2.33 and later */
	{"openat", (void *)openat_here, NULL, NULL},
	{"__open", (void *)open_here, NULL, NULL}, /* open64 too: fopen, mkstemp, glibc's open */
	{"__open_nocancel", (void *)open_nocancel, NULL, NULL}, /* opendir, setlocale, gettext, nss */
	{"getdents64", (void *)getdents_here, NULL, NULL}, /* readdir */
	{"__close_nocancel", (void *)close_nocancel, NULL, NULL}, /* closedir */
};
#define NHOOKS (sizeof hooks / sizeof hooks[0])
#define HOOK_SLOT 48 /* bytes of the hooks' page per hook: a jump to ours, the moved code, a jump back */

/* The next definition of NAME after this library; a hooked libc function (by any of its names:
 * open, open64 and __open are one) as it was, moved, since its entry jumps back here. */
static void *libc_fn(const char *name)
{
	void *f = dlsym(RTLD_NEXT, name);
	for (size_t i = 0; f && i < NHOOKS; i++)
		if (hooks[i].orig && f == hooks[i].entry)
			return hooks[i].orig;
	return f;
}

/* The length of the instruction at P if it is one of the few a syscall wrapper begins with that
 * run the same anywhere: push, mov of a register or an immediate, add/sub/and/or/xor/cmp/test of
 * registers or of the stack, no rip-relative operand; 0 for anything else. */
static int movable_length(const unsigned char *p)
{
	int n = 0, wide = 0, imm;
	if (p[0] == 0xf3 && p[1] == 0x0f && p[2] == 0x1e && p[3] == 0xfa)
		return 4;                              /* endbr64 (glibc built for CET) */
	if ((p[0] & 0xf0) == 0x40) /* REX */
		wide = p[0] & 8, n = 1;
	unsigned op = p[n++];
	if (op >= 0x50 && op <= 0x57)
		return n;                              /* push reg */
	if (op >= 0xb8 && op <= 0xbf)
		return n + (wide ? 8 : 4);             /* mov $imm, reg */
	switch (op) {
	case 0x01: case 0x09: case 0x21: case 0x29: case 0x31: case 0x39: case 0x3b: case 0x85: case 0x89:
	case 0x8b:
		imm = 0;
		break;
	case 0x83:
		imm = 1;
		break;
	case 0x81:
		imm = 4;
		break;
	default:
		return 0;
	}
	unsigned modrm = p[n++], mod = modrm >> 6, rm = modrm & 7;
	if (mod != 3 && rm == 4) {
		if (mod == 0 && (p[n] & 7) == 5)
			return 0;                      /* an absolute address */
		n++;                                   /* SIB */
	} else if (mod == 0 && rm == 5) {
		return 0;                              /* rip-relative */
	}
	return n + (mod == 1 ? 1 : mod == 2 ? 4 : 0) + imm;
}

/* jmp *0(%rip) with the address after it: a jump to anywhere, 14 bytes */
static unsigned char *jump_to(unsigned char *at, const void *to)
{
	static const unsigned char jmp[] = {0xff, 0x25, 0, 0, 0, 0};
	memcpy(at, jmp, sizeof jmp);
	memcpy(at + sizeof jmp, &to, sizeof to);
	return at + sizeof jmp + sizeof to;
}

static void hook_libc(void)
{
	const char *off = getenv("UMVU_FAST_LIBC");
	if (off && !strcmp(off, "0"))
		return;
	void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
	if (!libc || !__libc_single_threaded)
		return;
	unsigned char *f[NHOOKS], *near = NULL;
	for (size_t i = 0; i < NHOOKS; i++) {
		f[i] = dlsym(libc, hooks[i].name);
		if (f[i] && dlsym(RTLD_NEXT, hooks[i].name) != f[i])
			f[i] = NULL; /* another library's comes first */
		if (f[i])
			near = f[i];
	}
	if (!near)
		return;
	/* the page near libc: libc's first bytes jump to it with a 32-bit displacement */
	unsigned char *area = (unsigned char *)sys_raw6(SYS_mmap, ((long)near & ~(long)(PAGE - 1)) - (1L << 28), PAGE,
							 PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if ((unsigned long)area > -4096UL)
		return;
	int32_t rel[NHOOKS];
	int ok[NHOOKS] = {0};
	for (size_t i = 0; i < NHOOKS; i++) {
		int n = 0, k = 1;
		while (f[i] && n < 5 && (k = movable_length(f[i] + n)) > 0)
			n += k;
		unsigned char *slot = area + i * HOOK_SLOT;
		long d = f[i] ? (long)slot - (long)(f[i] + 5) : 0;
		if (!f[i] || n < 5 || d != (int32_t)d)
			continue;
		jump_to(slot, hooks[i].ours);
		memcpy(slot + 14, f[i], (size_t)n);
		jump_to(slot + 14 + n, f[i] + n);
		rel[i] = (int32_t)d, ok[i] = 1;
	}
	maps_changed();
	if (sys_raw(SYS_mprotect, (long)area, PAGE, PROT_READ | PROT_EXEC, 0, 0) != 0)
		goto out;
	uint64_t all = ~(uint64_t)0, was;
	sys_raw(SYS_rt_sigprocmask, SIG_BLOCK, (long)&all, (long)&was, 8, 0);
	for (size_t i = 0; i < NHOOKS; i++) /* the moved copies behave as the entries: REAL's from now */
		if (ok[i])
			hooks[i].entry = f[i], hooks[i].orig = area + i * HOOK_SLOT + 14;
	__atomic_fetch_add(&hooks_gen, 1, __ATOMIC_RELEASE);
	for (size_t i = 0; i < NHOOKS; i++) {
		long first = (long)f[i] & ~(long)(PAGE - 1), len = (long)f[i] + 5 - first;
		if (!ok[i] || sys_raw(SYS_mprotect, first, len, PROT_READ | PROT_WRITE | PROT_EXEC, 0, 0) != 0)
			continue;
		unsigned char j[5] = {0xe9};
		memcpy(j + 1, &rel[i], 4);
		memcpy(f[i], j, 5);
		sys_raw(SYS_mprotect, first, len, PROT_READ | PROT_EXEC, 0, 0);
		if (hooks[i].ours == (void *)fstatat_here)
			dirs_fstat_here = 1;
	}
	sys_raw(SYS_rt_sigprocmask, SIG_SETMASK, (long)&was, 0, 8, 0);
out:
	maps_changed();
}

/* glibc's internal open with no cancellation point (opendir, setlocale, gettext, nss) */
static int open_nocancel(const char *path, int flags, ...)
{
	mode_t mode = MODE_ARG(flags);
	int done, r = fast_open(AT_FDCWD, path, flags, mode, &done);
	if (done)
		return r;
	REAL(__open_nocancel);
	r = real___open_nocancel(path, flags, mode);
	recheck_mark(r);
	return r;
}
