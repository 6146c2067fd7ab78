/* Threads that open, read and stat while others do the same. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *path;

static void *worker(void *arg) {
    long ok = 0;
    char buf[256];
    (void)arg;
    for (int i = 0; i < 100; i++) {
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        if (read(fd, buf, sizeof buf) > 0)
            ok++;
        close(fd);
        struct stat st;
        if (stat(path, &st) != 0)
            ok--;
    }
    return (void *)ok;
}

int main(int argc, char **argv) {
    pthread_t t[4];
    long total = 0;
    path = argc > 1 ? argv[1] : "/etc/hostname";
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    printf("%ld\n", total);
    return 0;
}
