/* A preloaded library of the kind that wraps openat and fstatat and calls the next definition
 * (libeatmydata, sandboxes): placed after umvu's library, its "next" is libc's own function,
 * which umvu's library must then leave unhooked (a hooked one would jump back into umvu's
 * wrapper, which calls this library again: for ever).
 * NEXTOPEN_REPORT set: says at exit whether it saw a call. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int calls;

int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? va_arg(ap, mode_t) : 0;
	va_end(ap);
	int (*next)(int, const char *, int, ...) = dlsym(RTLD_NEXT, "openat");
	calls++;
	return next(dirfd, path, flags, mode);
}

int fstatat(int dirfd, const char *path, struct stat *st, int flags)
{
	int (*next)(int, const char *, struct stat *, int) = dlsym(RTLD_NEXT, "fstatat");
	calls++;
	return next(dirfd, path, st, flags);
}

__attribute__((destructor)) static void report(void)
{
	if (getenv("NEXTOPEN_REPORT"))
		dprintf(2, "nextopen: %d\n", calls > 0);
}

int openat64(int dirfd, const char *path, int flags, ...) __attribute__((alias("openat")));
int fstatat64(int dirfd, const char *path, struct stat64 *st, int flags) __attribute__((alias("fstatat")));
