/*
 * The smallest useful seccomp + ptrace tracer: the path calls stop, the
 * tracer resumes them at once.  Its cost per stop is the floor any tracer
 * (umvu included) pays on this machine; make bench compares against it.
 */
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static const int traced[] = {
	SYS_stat, SYS_lstat, SYS_newfstatat, SYS_statx, SYS_open, SYS_openat,
	SYS_access, SYS_faccessat, SYS_readlink, SYS_execve,
};

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: ctracer CMD [ARG...]\n");
		return 2;
	}
	pid_t child = fork();
	if (child == 0) {
		struct sock_filter f[2 + 2 * sizeof(traced) / sizeof(traced[0]) + 1];
		int n = 0;
		f[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
		for (unsigned i = 0; i < sizeof(traced) / sizeof(traced[0]); i++) {
			f[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, traced[i], 0, 1);
			f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_TRACE);
		}
		f[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
		struct sock_fprog prog = { .len = n, .filter = f };
		raise(SIGSTOP);
		prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
		if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog)) {
			perror("seccomp");
			_exit(127);
		}
		execvp(argv[1], argv + 1);
		perror(argv[1]);
		_exit(127);
	}
	int status;
	waitpid(child, &status, WUNTRACED);	/* seize it stopped: its SIGSTOP is spent */
	if (ptrace(PTRACE_SEIZE, child, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_TRACEFORK |
		   PTRACE_O_TRACEVFORK | PTRACE_O_TRACECLONE | PTRACE_O_EXITKILL)) {
		perror("ptrace");
		return 1;
	}
	kill(child, SIGCONT);
	int code = 0;
	pid_t pid;
	while ((pid = waitpid(-1, &status, __WALL)) > 0) {
		if (WIFEXITED(status) || WIFSIGNALED(status)) {
			if (pid == child)
				code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			continue;
		}
		int sig = WSTOPSIG(status), event = status >> 16;
		if (event == PTRACE_EVENT_STOP)
			sig = (sig == SIGSTOP || sig == SIGTSTP || sig == SIGTTIN || sig == SIGTTOU) ? sig : 0;
		else if (event || sig == SIGTRAP)
			sig = 0;
		if (event == PTRACE_EVENT_STOP && sig)
			ptrace(PTRACE_LISTEN, pid, 0, 0);
		else
			ptrace(PTRACE_CONT, pid, 0, sig);
	}
	return code;
}
