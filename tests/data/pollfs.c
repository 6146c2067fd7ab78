/* A libfuse3 file system whose one file is polled: /ticks reads a line per tick
 * (every 0.3 s, made by a thread of the daemon), as a device would, and an
 * empty /ticks reads EAGAIN.  It implements poll: POLLIN while a tick waits,
 * and when one comes it wakes the pollers it was given (fuse_notify_poll),
 * as libfuse's own poll example does.  Each POLL request is logged on stderr.
 *
 *   pollfs [libfuse options] MOUNTPOINT
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fuse3/fuse.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char queued[4096];
static size_t nqueued;
static struct fuse_pollhandle *waiting;

static int pf_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    memset(st, 0, sizeof *st);
    if (!strcmp(path, "/")) { st->st_mode = S_IFDIR | 0755; st->st_nlink = 2; return 0; }
    if (!strcmp(path, "/ticks")) { st->st_mode = S_IFREG | 0444; st->st_nlink = 1; return 0; }
    return -ENOENT;
}

static int pf_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
    (void)off; (void)fi; (void)flags;
    if (strcmp(path, "/")) return -ENOENT;
    fill(buf, ".", NULL, 0, 0); fill(buf, "..", NULL, 0, 0); fill(buf, "ticks", NULL, 0, 0);
    return 0;
}

static int pf_open(const char *path, struct fuse_file_info *fi) {
    if (strcmp(path, "/ticks")) return -ENOENT;
    fi->direct_io = 1; fi->nonseekable = 1;  /* a stream, as the kernel's poll example's files */
    return 0;
}

static int pf_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)path; (void)off; (void)fi;
    pthread_mutex_lock(&lock);
    size_t n = nqueued < size ? nqueued : size;
    memcpy(buf, queued, n);
    memmove(queued, queued + n, nqueued - n);
    nqueued -= n;
    pthread_mutex_unlock(&lock);
    return n ? (int)n : -EAGAIN;
}

static int pf_poll(const char *path, struct fuse_file_info *fi, struct fuse_pollhandle *ph, unsigned *revents) {
    (void)path; (void)fi;
    fprintf(stderr, "pollfs: POLL\n");
    pthread_mutex_lock(&lock);
    if (ph) {
        if (waiting) fuse_pollhandle_destroy(waiting);
        waiting = ph;
    }
    *revents = nqueued ? POLLIN : 0;
    pthread_mutex_unlock(&lock);
    return 0;
}

static void *ticker(void *arg) {
    (void)arg;
    for (int n = 1;; n++) {
        usleep(300000);
        pthread_mutex_lock(&lock);
        if (nqueued < sizeof queued - 32) nqueued += snprintf(queued + nqueued, 32, "tick %d\n", n);
        struct fuse_pollhandle *ph = waiting;
        waiting = NULL;
        pthread_mutex_unlock(&lock);
        if (ph) { fuse_notify_poll(ph); fuse_pollhandle_destroy(ph); }
    }
    return NULL;
}

static void *pf_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn; cfg->direct_io = 1;
    pthread_t t;
    pthread_create(&t, NULL, ticker, NULL);
    pthread_detach(t);
    return NULL;
}

static const struct fuse_operations ops = {
    .getattr = pf_getattr, .readdir = pf_readdir, .open = pf_open, .read = pf_read, .poll = pf_poll,
    .init = pf_init,
};

int main(int argc, char *argv[]) { return fuse_main(argc, argv, &ops, NULL); }
