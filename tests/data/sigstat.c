/* stat in a loop while a timer's signal, caught without SA_RESTART, comes every 50 us: Linux's
 * stat is never interrupted, so no call may fail with EINTR (tests/test_notify.py).
 * argv[1]: the name; argv[2]: N, the least number of stats and of signals. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

static volatile sig_atomic_t ticks;

static void tick(int sig)
{
	(void)sig;
	ticks++;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = tick; /* no SA_RESTART */
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval it = {{0, 50}, {0, 50}};
	setitimer(ITIMER_REAL, &it, NULL);
	long n = argc > 2 ? atol(argv[2]) : 2000, eintr = 0, other = 0;
	struct stat st;
	for (long i = 0; i < n || ticks < n; i++) { /* N stats, and on until N signals came */
		if (stat(argv[1], &st) == 0)
			continue;
		if (errno == EINTR)
			eintr++;
		else
			other++;
	}
	struct itimerval off = {{0, 0}, {0, 0}};
	setitimer(ITIMER_REAL, &off, NULL);
	printf("eintr %ld other %ld\n", eintr, other);
	return 0;
}
