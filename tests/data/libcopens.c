/* The calls glibc makes itself, which LD_PRELOAD does not reach: mkstemp's open (glibc's __open),
 * opendir's (__open_nocancel), the stat under stat() and fstat() (fstatat).  For each name given:
 * list the directory (sorted), stat each entry, read the first line of each regular file; then make
 * COUNT temporary files in TMPDIR.  Prints what it saw, errno names for failures, and the first
 * byte of libc's own fstatat, open and __open_nocancel (0xe9: a jump to umvu's library). */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
	void *libc = dlopen("libc.so.6", RTLD_NOLOAD | RTLD_LAZY);
	const char *syms[] = {"fstatat", "__open", "__open_nocancel"};
	for (int i = 0; i < 3; i++)
		printf("%s %02x\n", syms[i], *(unsigned char *)dlsym(libc, syms[i]));
	int count = atoi(argv[1]);
	const char *tmp = argv[2];
	for (int a = 3; a < argc; a++) {
		DIR *d = opendir(argv[a]);
		if (!d) {
			printf("%s: %s\n", argv[a], strerrorname_np(errno));
			continue;
		}
		char *names[512];
		int n = 0;
		struct dirent *e;
		while ((e = readdir(d)) && n < 512)
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				names[n++] = strdup(e->d_name);
		struct stat dst;
		printf("%s: %d entries, fstat %s\n", argv[a], n,
		       fstat(dirfd(d), &dst) == 0 && S_ISDIR(dst.st_mode) ? "dir" : strerrorname_np(errno));
		closedir(d);
		qsort(names, n, sizeof *names, cmp);
		for (int i = 0; i < n; i++) {
			char p[4096], line[128] = "";
			struct stat st;
			snprintf(p, sizeof p, "%s/%s", argv[a], names[i]);
			if (stat(p, &st) != 0) {
				printf("  %s %s\n", names[i], strerrorname_np(errno));
				continue;
			}
			FILE *f = S_ISREG(st.st_mode) ? fopen(p, "re") : NULL;
			if (f) {
				if (!fgets(line, sizeof line, f))
					line[0] = 0;
				line[strcspn(line, "\n")] = 0;
				fclose(f);
			}
			printf("  %s %o %ld [%s]\n", names[i], st.st_mode, (long)st.st_size, line);
		}
	}
	for (int i = 0; i < count; i++) {
		char t[4096];
		snprintf(t, sizeof t, "%s/tmpXXXXXX", tmp);
		int fd = mkstemp(t);
		if (fd < 0 || write(fd, "x", 1) != 1 || close(fd) != 0) {
			printf("mkstemp: %s\n", strerrorname_np(errno));
			return 1;
		}
	}
	printf("made %d\n", count);
	return 0;
}
