/* N stat() calls of one real file: a path call, which a tracer must look at. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 20000;
	const char *path = argc > 2 ? argv[2] : "/etc/hostname";
	struct stat st;
	for (long i = 0; i < n; i++)
		if (stat(path, &st) != 0) {
			perror(path);
			return 1;
		}
	return 0;
}
