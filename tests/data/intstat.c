/* One stat, with SIGINT caught without SA_RESTART: what it returned (tests/test_notify.py: a
 * signal ends a stat that waits on a slow module, as it does with a ptrace stop). */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static void caught(int sig)
{
	(void)sig;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = caught;
	sigaction(SIGINT, &sa, NULL);
	struct stat st;
	int r = argc > 1 ? stat(argv[1], &st) : -1;
	printf("stat %s\n", r == 0 ? "ok" : strerrorname_np(errno));
	return 0;
}
