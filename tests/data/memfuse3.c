/* A small libfuse3 file system for the tests: files in memory, served by
 * libfuse's default multithreaded loop.  "slow" (direct_io, as the kernel
 * then sends INTERRUPT) takes 3 s to read unless interrupted, which it
 * answers with EINTR; "stubborn" takes 1 s and ignores INTERRUPT; every
 * request's thread id is counted,
 * and "threads" reads how many threads served requests so far.  Files
 * whose name starts with "nf" are opened with noflush (FOPEN_NOFLUSH);
 * each FLUSH is logged on stderr.  Files whose name starts with "ro" say
 * mode 0444, but the daemon writes them all the same (for the kernel's
 * checks with -o default_permissions).  Files whose name starts with "o"
 * belong to another user (uid and gid 12345) and are 0666, as the root
 * directory, which is 01777: the sticky bit's checks.  An octal number
 * written to a file named "rootmode" becomes the root's mode, unknown to the
 * kernel until it asks again.  Only their times can be
 * set; for the others, setting times is ENOSYS.  With MEMFUSE3_NO_ATOMIC_O_TRUNC
 * in its environment it declines FUSE_ATOMIC_O_TRUNC (as libfuse2's daemons do by default): an
 * open with O_TRUNC then comes as OPEN and a SETATTR of the size.
 *
 *   memfuse3 [libfuse options] MOUNTPOINT
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fuse3/fuse.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAXF 64
struct file { char name[64]; char *data; size_t size; int used; };
static struct file files[MAXF];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_t seen[64];
static unsigned rootmode = 01777;
static int nseen;

static void note_thread(void)
{
    pthread_t me = pthread_self();
    pthread_mutex_lock(&lock);
    int i;
    for (i = 0; i < nseen; i++)
        if (pthread_equal(seen[i], me)) break;
    if (i == nseen && nseen < 64) seen[nseen++] = me;
    pthread_mutex_unlock(&lock);
}

static struct file *find(const char *path)
{
    for (int i = 0; i < MAXF; i++)
        if (files[i].used && strcmp(files[i].name, path + 1) == 0) return &files[i];
    return NULL;
}

static int m_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    (void)fi;
    note_thread();
    memset(st, 0, sizeof(*st));
    st->st_uid = getuid();
    st->st_gid = getgid();
    if (strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | rootmode; st->st_nlink = 2; st->st_uid = st->st_gid = 12345; return 0;
    }
    if (strcmp(path, "/slow") == 0 || strcmp(path, "/stubborn") == 0 || strcmp(path, "/threads") == 0) {
        st->st_mode = S_IFREG | 0444; st->st_nlink = 1; st->st_size = 64; return 0;
    }
    pthread_mutex_lock(&lock);
    struct file *f = find(path);
    if (f) { st->st_mode = S_IFREG | (strncmp(f->name, "ro", 2) == 0 ? 0444 : 0644); st->st_nlink = 1; st->st_size = f->size; }
    if (f && f->name[0] == 'o') { st->st_mode = S_IFREG | 0666; st->st_uid = st->st_gid = 12345; }
    pthread_mutex_unlock(&lock);
    return f ? 0 : -ENOENT;
}

static int m_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off, struct fuse_file_info *fi,
                     enum fuse_readdir_flags flags)
{
    (void)off; (void)fi; (void)flags;
    if (strcmp(path, "/") != 0) return -ENOTDIR;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    fill(buf, "slow", NULL, 0, 0);
    fill(buf, "threads", NULL, 0, 0);
    pthread_mutex_lock(&lock);
    for (int i = 0; i < MAXF; i++)
        if (files[i].used) fill(buf, files[i].name, NULL, 0, 0);
    pthread_mutex_unlock(&lock);
    return 0;
}

static int m_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
    (void)mode;
    if (strncmp(path, "/nf", 3) == 0) fi->noflush = 1;
    pthread_mutex_lock(&lock);
    int r = -ENOSPC;
    if (find(path)) r = 0;
    else for (int i = 0; i < MAXF; i++)
        if (!files[i].used) {
            snprintf(files[i].name, sizeof files[i].name, "%s", path + 1);
            files[i].used = 1; files[i].data = NULL; files[i].size = 0; r = 0; break;
        }
    pthread_mutex_unlock(&lock);
    return r;
}

static int m_open(const char *path, struct fuse_file_info *fi)
{
    if (strcmp(path, "/slow") == 0 || strcmp(path, "/stubborn") == 0) fi->direct_io = 1;
    if (strncmp(path, "/nf", 3) == 0) fi->noflush = 1;
    struct stat st;
    return m_getattr(path, &st, NULL);
}

static int m_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)fi;
    note_thread();
    char text[64];
    if (strcmp(path, "/slow") == 0) {
        for (int i = 0; i < 30 && !fuse_interrupted(); i++) usleep(100000);
        if (fuse_interrupted()) return -EINTR;
        snprintf(text, sizeof text, "slow\n");
    } else if (strcmp(path, "/stubborn") == 0) {
        usleep(1000000);
        snprintf(text, sizeof text, "stubborn\n");
    } else if (strcmp(path, "/threads") == 0) {
        pthread_mutex_lock(&lock);
        snprintf(text, sizeof text, "%d\n", nseen);
        pthread_mutex_unlock(&lock);
    } else {
        pthread_mutex_lock(&lock);
        struct file *f = find(path);
        int n = 0;
        if (!f) n = -ENOENT;
        else if ((size_t)off < f->size) {
            n = f->size - off < size ? f->size - off : size;
            memcpy(buf, f->data + off, n);
        }
        pthread_mutex_unlock(&lock);
        usleep(20000); /* slow enough that parallel readers overlap */
        return n;
    }
    size_t len = strlen(text);
    if ((size_t)off >= len) return 0;
    if (size > len - off) size = len - off;
    memcpy(buf, text + off, size);
    return size;
}

static int m_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)fi;
    if (strcmp(path, "/rootmode") == 0) {
        char mode[16] = "";
        memcpy(mode, buf, size < sizeof mode - 1 ? size : sizeof mode - 1);
        rootmode = strtoul(mode, NULL, 8) & 07777;
    }
    pthread_mutex_lock(&lock);
    struct file *f = find(path);
    int r = -ENOENT;
    if (f) {
        if (off + size > f->size) {
            f->data = realloc(f->data, off + size);
            if ((size_t)off > f->size) memset(f->data + f->size, 0, off - f->size);
            f->size = off + size;
        }
        memcpy(f->data + off, buf, size);
        r = size;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

static int m_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
    (void)fi;
    pthread_mutex_lock(&lock);
    struct file *f = find(path);
    if (f) { f->data = realloc(f->data, size ? size : 1); if ((size_t)size > f->size) memset(f->data + f->size, 0, size - f->size); f->size = size; }
    pthread_mutex_unlock(&lock);
    return f ? 0 : -ENOENT;
}

static int m_unlink(const char *path)
{
    pthread_mutex_lock(&lock);
    struct file *f = find(path);
    if (f) { f->used = 0; free(f->data); f->data = NULL; }
    pthread_mutex_unlock(&lock);
    return f ? 0 : -ENOENT;
}

static int m_rename(const char *from, const char *to, unsigned int flags)
{
    if (flags) return -EINVAL;
    pthread_mutex_lock(&lock);
    struct file *f = find(from), *t = find(to);
    if (f && t && t != f) { t->used = 0; free(t->data); t->data = NULL; }
    if (f) snprintf(f->name, sizeof f->name, "%s", to + 1);
    pthread_mutex_unlock(&lock);
    return f ? 0 : -ENOENT;
}

static int m_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
    (void)tv; (void)fi;
    return path[1] == 'o' ? 0 : -ENOSYS;
}

static int m_flush(const char *path, struct fuse_file_info *fi)
{
    (void)fi;
    fprintf(stderr, "memfuse3: flush %s\n", path);
    return 0;
}

static void m_destroy(void *p)
{
    (void)p;
    fprintf(stderr, "memfuse3: destroy\n");
}

static void *m_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)cfg;
    if (getenv("MEMFUSE3_NO_ATOMIC_O_TRUNC"))
        conn->want &= ~FUSE_CAP_ATOMIC_O_TRUNC;
    return NULL;
}

static const struct fuse_operations ops = {
    .getattr = m_getattr, .readdir = m_readdir, .create = m_create, .open = m_open, .read = m_read,
    .write = m_write, .truncate = m_truncate, .unlink = m_unlink, .rename = m_rename,
    .utimens = m_utimens, .flush = m_flush, .destroy = m_destroy, .init = m_init,
};

int main(int argc, char *argv[])
{
    return fuse_main(argc, argv, &ops, NULL);
}
