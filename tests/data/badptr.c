/* Bad pointers to the calls the fast path's library wraps: the kernel's answers (EFAULT), which
 * the library must give too, never a SIGSEGV of its own (tests/test_fastpath.py). */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/stat.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <sys/xattr.h>
static void say(const char *what, long r) { printf("%s %ld %s\n", what, r, r < 0 ? strerror(errno) : ""); }
static void calls(const char *tag, const char *p) {
	struct stat st; char buf[16]; char name[64];
	snprintf(name, sizeof name, "%s stat", tag); say(name, stat(p, &st));
	snprintf(name, sizeof name, "%s lstat", tag); say(name, lstat(p, &st));
	snprintf(name, sizeof name, "%s fstatat", tag); say(name, fstatat(AT_FDCWD, p, &st, 0));
	snprintf(name, sizeof name, "%s statx", tag); struct statx sx; say(name, statx(AT_FDCWD, p, 0, STATX_BASIC_STATS, &sx));
	snprintf(name, sizeof name, "%s access", tag); say(name, access(p, R_OK));
	snprintf(name, sizeof name, "%s euidaccess", tag); say(name, euidaccess(p, R_OK));
	snprintf(name, sizeof name, "%s open", tag); say(name, open(p, O_RDONLY));
	snprintf(name, sizeof name, "%s openat", tag); say(name, openat(AT_FDCWD, p, O_RDONLY | O_DIRECTORY));
	snprintf(name, sizeof name, "%s readlink", tag); say(name, readlink(p, buf, sizeof buf));
	snprintf(name, sizeof name, "%s fopen", tag); FILE *f = fopen(p, "r"); say(name, f ? 0 : -1);
	snprintf(name, sizeof name, "%s getxattr", tag); say(name, getxattr(p, "user.k", buf, sizeof buf));
	snprintf(name, sizeof name, "%s lgetxattr", tag); say(name, lgetxattr(p, "user.k", buf, sizeof buf));
	snprintf(name, sizeof name, "%s listxattr", tag); say(name, listxattr(p, buf, sizeof buf));
	snprintf(name, sizeof name, "%s llistxattr", tag); say(name, llistxattr(p, buf, sizeof buf));
}
int main(void) {
	calls("small", (const char *)16);
	calls("high", (const char *)-8L);
	char *none = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	calls("prot_none", none);
	/* a name that runs off the end of a readable page into an unreadable one */
	char *two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(two, 'a', 4096);
	two[0] = '/';
	mprotect(two + 4096, 4096, PROT_NONE);
	calls("crossing", two + 4096 - 10);
	/* and a good name at the end of a page, just before an unreadable one */
	strcpy(two + 4096 - 14, "/etc/hostname");
	calls("good", two + 4096 - 14);
	/* a good name, then the same page made unreadable, readable again, unmapped: each as the
	 * kernel says at that moment (the library remembers pages it found readable) */
	char *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	strcpy(page, "/etc/hostname");
	calls("mapped", page);
	mprotect(page, 4096, PROT_NONE);
	calls("protected", page);
	mprotect(page, 4096, PROT_READ);
	calls("readable again", page);
	munmap(page, 4096);
	calls("unmapped", page);
	char *cwd = getcwd(none, 100); say("getcwd", cwd ? 0 : -1);
	struct stat st; say("stat-buf", stat("/etc/hostname", (struct stat *)none));
	say("lstat-buf", lstat("/etc/hostname", (struct stat *)none));
	say("getxattr-name", getxattr("/etc/hostname", none, NULL, 0));
	say("getxattr-buf", getxattr("/etc", "user.nothing", none, 100));
	say("listxattr-buf", listxattr("/etc/hostname", none, 100));
	(void)st;
	return 0;
}
