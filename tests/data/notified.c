/* The calls umvu answers through seccomp user notifications (umvu/notify.py), made relative to
 * the cwd: run with the cwd in a view (umvu rewrites each name, so it makes the call itself) and
 * natively, the output must be the same.  argv[1]: the directory to work in (conftest's tree). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BAD ((void *)16)

static void said(const char *what, long r)
{
	printf("%-28s %s\n", what, r < 0 ? strerrorname_np(errno) : "ok");
}

static void st(const char *what, int r, const struct stat *s)
{
	if (r < 0)
		said(what, r);
	else
		printf("%-28s mode %o size %lld ino %llu nlink %lu uid %u\n", what, s->st_mode,
		       (long long)s->st_size, (unsigned long long)s->st_ino, (unsigned long)s->st_nlink, s->st_uid);
}

int main(int argc, char **argv)
{
	struct stat s;
	struct statx x;
	char buf[64];
	if (argc < 2 || chdir(argv[1]) < 0) {
		perror("chdir");
		return 1;
	}
	st("stat a.txt", stat("a.txt", &s), &s);
	st("lstat abs", lstat("abs", &s), &s);
	st("stat abs", stat("abs", &s), &s);
	st("stat dangling", stat("dangling", &s), &s);
	st("stat sub/deeper/../../a.txt", stat("sub/deeper/../../a.txt", &s), &s);
	st("stat a.txt/", stat("a.txt/", &s), &s);
	st("stat empty", stat("", &s), &s);
	st("fstatat rel nofollow", fstatat(AT_FDCWD, "rel", &s, AT_SYMLINK_NOFOLLOW), &s);
	st("fstatat dirlink/b.bin", fstatat(AT_FDCWD, "dirlink/b.bin", &s, 0), &s);
	st("fstatat empty path", fstatat(AT_FDCWD, "", &s, AT_EMPTY_PATH), &s);
	said("fstatat bad flags", fstatat(AT_FDCWD, "a.txt", &s, 0x4));
	said("stat bad buffer", syscall(SYS_newfstatat, AT_FDCWD, "a.txt", BAD, 0));
	said("stat bad name", syscall(SYS_newfstatat, AT_FDCWD, BAD, &s, 0));
	if (statx(AT_FDCWD, "sub/deeper/c", 0, STATX_SIZE | STATX_INO, &x) < 0)
		said("statx sub/deeper/c", -1);
	else
		printf("%-28s size %llu ino %llu mask-has %d\n", "statx sub/deeper/c", (unsigned long long)x.stx_size,
		       (unsigned long long)x.stx_ino, (x.stx_mask & (STATX_SIZE | STATX_INO)) == (STATX_SIZE | STATX_INO));
	said("statx bad buffer", syscall(SYS_statx, AT_FDCWD, "a.txt", 0, STATX_SIZE, BAD));
	said("statx nofollow dangling", statx(AT_FDCWD, "dangling", AT_SYMLINK_NOFOLLOW, STATX_TYPE, &x));
	said("access private R", access("private", R_OK));
	said("access exec.sh X", access("exec.sh", X_OK));
	said("access a.txt X", access("a.txt", X_OK));
	said("access nope", access("nope", F_OK));
	said("access bad mode", access("a.txt", 0x10));
	said("faccessat a.txt W", faccessat(AT_FDCWD, "a.txt", W_OK, 0));
	said("faccessat2 eaccess W", syscall(SYS_faccessat2, AT_FDCWD, "a.txt", W_OK, AT_EACCESS));
	said("faccessat2 dangling nofollow", syscall(SYS_faccessat2, AT_FDCWD, "dangling", F_OK, AT_SYMLINK_NOFOLLOW));
	memset(buf, 0, sizeof buf);
	long n = readlink("rel", buf, 3);
	printf("%-28s %ld %s\n", "readlink rel, 3 bytes", n, buf);
	n = readlink("rel", buf, sizeof buf);
	printf("%-28s %ld %.*s\n", "readlink rel", n, (int)(n > 0 ? n : 0), buf);
	said("readlink a.txt", readlink("a.txt", buf, sizeof buf));
	said("readlink size 0", syscall(SYS_readlink, "rel", buf, 0));
	said("readlink bad buffer", syscall(SYS_readlink, "rel", BAD, 10));
	said("readlinkat dangling", readlinkat(AT_FDCWD, "dangling", buf, sizeof buf));
	return 0;
}
