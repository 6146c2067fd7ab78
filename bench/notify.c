/* What one intercepted call costs on this machine, by mechanism (issue 18, item 4):
 *
 *   ptrace    seccomp RET_TRACE; the tracer resumes the call at once (PTRACE_CONT)
 *   notify    seccomp RET_USER_NOTIF; the supervisor answers CONTINUE (the kernel runs the call)
 *   sync      the same with SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (Linux 6.6: the supervisor's
 *             reply wakes the caller on the supervisor's CPU, and the caller's wait wakes the
 *             supervisor synchronously, like a pipe ping-pong, not through the scheduler)
 *   addfd     SYNC as above, the supervisor answering with an fd of its own installed in the
 *             caller and the reply sent in one ioctl (SECCOMP_ADDFD_FLAG_SEND): the shape of a
 *             virtual open answered with a real fd
 *
 * Each runs N calls of getppid (openat of /dev/null for addfd) in a child, timed by the child,
 * in ns per call, minus nothing: compare with the native line.  Run with "pin" to put both on
 * one CPU.  The supervisors here are C and do nothing per call: the floor of each mechanism,
 * not what a Python hypervisor pays on top (about 8 us more per stop here).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP 1
#endif
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif

static long calls = 100000;

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* A filter that sends NR to ACTION and lets everything else through. */
static int install(int nr, unsigned action, unsigned flags)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, action),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
	prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* The calls, timed by the caller; the time goes to the parent through FD. */
static void caller(int nr, int out)
{
	double t0 = now();
	for (long i = 0; i < calls; i++) {
		long r = nr == SYS_getppid ? syscall(SYS_getppid) : syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY);
		if (nr != SYS_getppid && r >= 0)
			close((int)r);
	}
	double ns = (now() - t0) / calls * 1e9;
	if (write(out, &ns, sizeof ns) != sizeof ns)
		_exit(1);
}

static double native(void)
{
	int p[2];
	if (pipe(p) != 0)
		exit(1);
	if (fork() == 0) {
		caller(SYS_getppid, p[1]);
		_exit(0);
	}
	double ns;
	if (read(p[0], &ns, sizeof ns) != sizeof ns)
		exit(1);
	wait(NULL);
	return ns;
}

static double traced(void)
{
	int p[2];
	if (pipe(p) != 0)
		exit(1);
	pid_t pid = fork();
	if (pid == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		raise(SIGSTOP);
		if (install(SYS_getppid, SECCOMP_RET_TRACE, 0) != 0)
			_exit(2);
		caller(SYS_getppid, p[1]);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESECCOMP | PTRACE_O_EXITKILL);
	ptrace(PTRACE_CONT, pid, 0, 0);
	while (waitpid(pid, &st, 0) == pid && !WIFEXITED(st) && !WIFSIGNALED(st)) {
		int event = (st >> 8) == (SIGTRAP | (PTRACE_EVENT_SECCOMP << 8));
		ptrace(PTRACE_CONT, pid, 0, event ? 0 : WSTOPSIG(st));
	}
	double ns;
	if (read(p[0], &ns, sizeof ns) != sizeof ns)
		return -1;
	return ns;
}

/* the listener's fd, passed from the child that installed the filter */
static int recv_fd(int sock)
{
	char c;
	struct iovec io = {&c, 1};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
	if (recvmsg(sock, &m, 0) != 1)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(CMSG_FIRSTHDR(&m)), sizeof fd);
	return fd;
}

static void send_fd(int sock, int fd)
{
	char c = 0;
	struct iovec io = {&c, 1};
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof u.b};
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);
	h->cmsg_level = SOL_SOCKET, h->cmsg_type = SCM_RIGHTS, h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &fd, sizeof fd);
	if (sendmsg(sock, &m, 0) != 1)
		_exit(3);
}

/* MODE: 0 CONTINUE, 1 CONTINUE with SYNC_WAKE_UP, 2 an fd sent with the reply (and SYNC_WAKE_UP) */
static double notified(int mode)
{
	int p[2], s[2];
	if (pipe(p) != 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, s) != 0)
		exit(1);
	int nr = mode == 2 ? SYS_openat : SYS_getppid;
	pid_t pid = fork();
	if (pid == 0) {
		int l = install(nr, SECCOMP_RET_USER_NOTIF, SECCOMP_FILTER_FLAG_NEW_LISTENER);
		if (l < 0)
			_exit(2);
		send_fd(s[1], l);
		close(l);
		caller(nr, p[1]);
		_exit(0);
	}
	int l = recv_fd(s[0]);
	if (l < 0)
		return -1;
	if (mode >= 1 && ioctl(l, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) != 0)
		return -2; /* an older kernel */
	int devnull = open("/dev/null", O_RDONLY);
	struct seccomp_notif req;
	struct seccomp_notif_resp resp;
	for (;;) {
		memset(&req, 0, sizeof req);
		if (ioctl(l, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
			if (errno == EINTR)
				continue;
			break; /* the caller is gone */
		}
		if (mode == 2) {
			struct seccomp_notif_addfd a = {.id = req.id, .flags = SECCOMP_ADDFD_FLAG_SEND, .srcfd = (__u32)devnull};
			if (ioctl(l, SECCOMP_IOCTL_NOTIF_ADDFD, &a) < 0)
				break;
			continue;
		}
		memset(&resp, 0, sizeof resp);
		resp.id = req.id;
		resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
		if (ioctl(l, SECCOMP_IOCTL_NOTIF_SEND, &resp) != 0)
			break;
	}
	double ns;
	if (read(p[0], &ns, sizeof ns) != sizeof ns)
		return -1;
	waitpid(pid, NULL, 0);
	close(l);
	close(devnull);
	return ns;
}

int main(int argc, char **argv)
{
	if (argc > 1 && strcmp(argv[1], "pin") == 0) {
		cpu_set_t one;
		CPU_ZERO(&one);
		CPU_SET(0, &one);
		sched_setaffinity(0, sizeof one, &one);
	}
	if (argc > 2)
		calls = atol(argv[2]);
	printf("native %.0f\nptrace %.0f\nnotify %.0f\nsync %.0f\naddfd %.0f\n", native(), traced(), notified(0),
	       notified(1), notified(2));
	return 0;
}
