/* N stat() calls of one real file: a path call, which a tracer must look at.  With a third
 * argument "time": after a warm-up, the calls time themselves, and the mean cost of one is
 * printed in nanoseconds (what the fast path costs a served call, start-up apart). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int stats(long n, const char *path)
{
	struct stat st;
	for (long i = 0; i < n; i++)
		if (stat(path, &st) != 0) {
			perror(path);
			return 1;
		}
	return 0;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	const char *path = argc > 2 ? argv[2] : "/etc/hostname";
	if (argc <= 3 || strcmp(argv[3], "time") != 0)
		return stats(n, path);
	if (stats(1000, path) != 0)
		return 1;
	double t0 = now();
	if (stats(n, path) != 0)
		return 1;
	printf("%.1f\n", (now() - t0) / (double)n * 1e9);
	return 0;
}
