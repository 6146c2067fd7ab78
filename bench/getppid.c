/* N getppid() calls: a call no module can virtualize, so it must never stop. */
#include <stdlib.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 200000;
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	return 0;
}
