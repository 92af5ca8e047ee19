/* SPDX-License-Identifier: MIT */
/* tests/fuzz/fuzzutil.c — see fuzzutil.h. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzzutil.h"

static char sandbox[PATH_MAX];

static void rm_tree(const char *path, bool keep_top)
{
    struct stat st;
    DIR *d;
    struct dirent *de;

    if (lstat(path, &st) < 0)
        return;
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    d = opendir(path);
    while (d && (de = readdir(d))) {
        char sub[PATH_MAX];

        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
        rm_tree(sub, false);
    }
    if (d)
        closedir(d);
    if (!keep_top)
        rmdir(path);
}

static void sandbox_remove(void)
{
    if (sandbox[0])
        rm_tree(sandbox, false);
}

const char *fz_sandbox(const char *tag)
{
    const char *base = getenv("TMPDIR");
    struct stat st;

    /* tmpfs: the state file is fsync'd on every change, volumes are files. */
    if (!base && stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode))
        base = "/dev/shm";
    snprintf(sandbox, sizeof sandbox, "%s/pitcopy-%s-XXXXXX", base ? base : "/tmp", tag);
    if (!mkdtemp(sandbox)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(sandbox_remove);
    return sandbox;
}

void fz_empty_dir(const char *dir)
{
    rm_tree(dir, true);
}

static void *client_main(void *arg)
{
    struct fz_client *c = arg;
    size_t off = 0;
    char sink[65536];

    for (;;) {
        struct pollfd p = { .fd = c->fd, .events = POLLIN | (off < c->size ? POLLOUT : 0) };

        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p.revents & POLLOUT) {
            /* Not past the mark in one send: it is met exactly. */
            size_t len = (off < c->mark ? c->mark : c->size) - off;
            ssize_t w = send(c->fd, c->data + off, len, MSG_NOSIGNAL | MSG_DONTWAIT);

            if (w > 0)
                off += (size_t)w;
            else if (w < 0 && errno != EAGAIN && errno != EINTR)
                off = c->size;          /* the server stopped reading: so do we */
            if (off == c->size)
                shutdown(c->fd, SHUT_WR);
            pthread_mutex_lock(&c->lock);
            c->sent = off;
            c->done = off == c->size;
            pthread_cond_broadcast(&c->cond);
            pthread_mutex_unlock(&c->lock);
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = recv(c->fd, sink, sizeof sink, MSG_DONTWAIT);

            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break;                  /* the server hung up */
            if (n > 0 && c->show && write(2, sink, (size_t)n) < 0)
                c->show = false;
        }
    }
    return NULL;
}

void fz_client_start(struct fz_client *c, int fd, const uint8_t *data, size_t size,
                     size_t mark)
{
    c->fd = fd;
    c->data = data;
    c->size = size;
    c->mark = mark < size ? mark : size;
    c->show = getenv("FUZZ_SHOW_REPLIES") != NULL;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->sent = 0;
    c->done = size == 0;
    if (size == 0)
        shutdown(fd, SHUT_WR);
    if (pthread_create(&c->th, NULL, client_main, c) != 0) {
        perror("fuzz: pthread_create");
        abort();
    }
}

void fz_client_wait_sent(struct fz_client *c, size_t n)
{
    pthread_mutex_lock(&c->lock);
    while (c->sent < n && !c->done)
        pthread_cond_wait(&c->cond, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

void fz_client_join(struct fz_client *c)
{
    pthread_join(c->th, NULL);
    close(c->fd);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
}
