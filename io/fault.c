/* SPDX-License-Identifier: MIT */
/*
 * io/fault.c — fault rules and the power-loss simulation (see fault.h).
 *
 * Invariants
 *   F1  With no rule and no simulation, io_fault_check is one atomic load
 *       and returns 0: production I/O pays nothing else.
 *   F2  Simulation: every write between its check and the next completed
 *       sync of its file (after the write completed) has an undo record
 *       holding the bytes it overwrote, taken before it was issued, under
 *       sim.lock; crash() applies undo records newest first, so the file ends
 *       as if some subset of those writes (some torn) never reached the disk.
 *       A write durable by itself (FUA) patches the older records it
 *       overlaps, so undoing them cannot undo it.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/fault.h"

struct rule {
    char      path[256];
    int       op;          /* -1 any, IO_OP_READ, IO_OP_WRITE, IO_OP_FSYNC (both syncs) */
    int       err;
    uint64_t  after, count, seen, failed;
    struct rule *next;
};

struct undo {
    int       fd;
    uint64_t  off;
    uint32_t  len;
    bool      completed;
    char     *old;         /* the bytes before the write */
    struct undo *next, *prev;   /* newest at head */
};

static struct {
    _Atomic int       active;     /* rules or simulation armed (F1) */
    pthread_once_t    once;
    pthread_mutex_t   lock;
    struct rule      *rules;
    _Atomic uint64_t  injected;
    bool              sim;
    struct undo      *head, *tail;
    uint64_t          volatile_bytes;
} F = { .once = PTHREAD_ONCE_INIT, .lock = PTHREAD_MUTEX_INITIALIZER };

static int parse_err(const char *s)
{
    if (!strcmp(s, "EIO"))
        return EIO;
    if (!strcmp(s, "ENOSPC"))
        return ENOSPC;
    if (!strcmp(s, "EROFS"))
        return EROFS;
    char *end;
    long v = strtol(s, &end, 10);
    return *s && !*end && v > 0 && v < 4096 ? (int)v : -1;
}

int io_fault_add(const char *spec)
{
    char buf[512], *f[5] = { 0 };
    int n = 0;
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *p = buf, *tok; n < 5 && (tok = strsep(&p, ":")); )
        f[n++] = tok;
    if (n < 3 || !*f[0])
        return -EINVAL;
    struct rule *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    snprintf(r->path, sizeof r->path, "%s", f[0]);
    if (!strcmp(f[1], "read"))
        r->op = IO_OP_READ;
    else if (!strcmp(f[1], "write"))
        r->op = IO_OP_WRITE;
    else if (!strcmp(f[1], "sync"))
        r->op = IO_OP_FSYNC;
    else if (!strcmp(f[1], "any"))
        r->op = -1;
    else
        r->op = -2;
    r->err = parse_err(f[2]);
    r->after = n > 3 ? strtoull(f[3], NULL, 10) : 0;
    r->count = n > 4 ? strtoull(f[4], NULL, 10) : 0;
    if (r->op == -2 || r->err < 0) {
        free(r);
        return -EINVAL;
    }
    pthread_mutex_lock(&F.lock);
    r->next = F.rules;
    F.rules = r;
    atomic_store(&F.active, 1);
    pthread_mutex_unlock(&F.lock);
    return 0;
}

void io_fault_clear(void)
{
    pthread_mutex_lock(&F.lock);
    while (F.rules) {
        struct rule *r = F.rules;
        F.rules = r->next;
        free(r);
    }
    atomic_store(&F.active, F.sim);
    pthread_mutex_unlock(&F.lock);
}

uint64_t io_fault_injected(void)
{
    return atomic_load(&F.injected);
}

static void from_env(void)
{
    const char *s = getenv("PITCOPY_FAULTS");
    if (s && *s) {
        char *copy = strdup(s), *p = copy, *tok;
        while (copy && (tok = strsep(&p, ";")))
            if (*tok && io_fault_add(tok) < 0)
                fprintf(stderr, "pitcopy: PITCOPY_FAULTS: ignoring malformed rule '%s'\n", tok);
        free(copy);
    }
    s = getenv("PITCOPY_CRASHSIM");
    if (s && *s && strcmp(s, "0"))
        io_crashsim_enable();
}

static bool fd_path(int fd, char *out, size_t n)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t k = readlink(link, out, n - 1);
    if (k < 0)
        return false;
    out[k] = 0;
    return true;
}

/* A second descriptor for the same file without O_DIRECT, so the undo
 * buffers need no alignment (test-only cost). */
static int plain_fd(int fd)
{
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    return open(link, O_RDWR | O_CLOEXEC);
}

static bool is_sync(int op)
{
    return op == IO_OP_FSYNC || op == IO_OP_FDATASYNC;
}

/* Save what a write will overwrite (F2); lock held. */
static void undo_record(int fd, uint64_t off, uint32_t len)
{
    struct undo *u = calloc(1, sizeof *u);
    if (!u || !(u->old = malloc(len ? len : 1))) {
        free(u);
        return;
    }
    int pfd = plain_fd(fd);
    ssize_t k = pfd >= 0 ? pread(pfd, u->old, len, (off_t)off) : -1;
    if (pfd >= 0)
        close(pfd);
    if (k < 0)
        k = 0;
    if ((uint32_t)k < len)      /* past the end: it was never written */
        memset(u->old + k, 0, len - (uint32_t)k);
    u->fd = fd;
    u->off = off;
    u->len = len;
    u->next = F.head;
    if (F.head)
        F.head->prev = u;
    F.head = u;
    if (!F.tail)
        F.tail = u;
    F.volatile_bytes += len;
}

static void undo_unlink(struct undo *u)
{
    if (u->prev)
        u->prev->next = u->next;
    else
        F.head = u->next;
    if (u->next)
        u->next->prev = u->prev;
    else
        F.tail = u->prev;
    F.volatile_bytes -= u->len;
    free(u->old);
    free(u);
}

/*
 * u reached the disk on its own (FUA): drop its record, and let older
 * records that overlap it restore what u wrote there, not what was before
 * u — a lost older write cannot take a durable newer one with it (F2).
 */
static void undo_durable(struct undo *u)
{
    for (struct undo *v = u->next; v; v = v->next) {
        if (v->fd != u->fd || v->off >= u->off + u->len || u->off >= v->off + v->len)
            continue;
        uint64_t lo = v->off > u->off ? v->off : u->off;
        uint64_t hi = v->off + v->len < u->off + u->len ? v->off + v->len : u->off + u->len;
        int pfd = plain_fd(u->fd);
        if (pfd >= 0) {
            (void)!pread(pfd, v->old + (lo - v->off), hi - lo, (off_t)lo);
            close(pfd);
        }
    }
    undo_unlink(u);
}

int io_fault_check(int fd, int op, uint64_t off, uint32_t len)
{
    if (op == IO_OP_PUNCH)
        op = IO_OP_WRITE;       /* a hole is a write of zeros, for rules and the simulator */
    pthread_once(&F.once, from_env);
    if (!atomic_load_explicit(&F.active, memory_order_relaxed))
        return 0;                                   /* F1 */
    if (op != IO_OP_READ && op != IO_OP_WRITE && !is_sync(op))
        return 0;
    int res = 0;
    char path[512];
    bool have_path = false;
    pthread_mutex_lock(&F.lock);
    for (struct rule *r = F.rules; r && !res; r = r->next) {
        if (r->op >= 0 && !(r->op == op || (r->op == IO_OP_FSYNC && is_sync(op))))
            continue;
        if (!have_path && !(have_path = fd_path(fd, path, sizeof path)))
            break;
        if (!strstr(path, r->path))
            continue;
        if (r->seen++ < r->after || (r->count && r->failed >= r->count))
            continue;
        r->failed++;
        res = -r->err;
    }
    if (res)
        atomic_fetch_add(&F.injected, 1);
    else if (F.sim && op == IO_OP_WRITE)
        undo_record(fd, off, len);
    pthread_mutex_unlock(&F.lock);
    return res;
}

void io_fault_done(int fd, int op, bool dsync, uint64_t off, uint32_t len, int res)
{
    if (op == IO_OP_PUNCH)
        op = IO_OP_WRITE;
    if (!atomic_load_explicit(&F.active, memory_order_relaxed))
        return;
    pthread_mutex_lock(&F.lock);
    if (F.sim && op == IO_OP_WRITE) {
        /* The newest undo record of this write: it completed. */
        for (struct undo *u = F.head; u; u = u->next)
            if (u->fd == fd && u->off == off && u->len == len && !u->completed) {
                u->completed = true;
                if (dsync && res >= 0)
                    undo_durable(u);    /* durable by itself */
                break;
            }
    } else if (F.sim && is_sync(op) && res >= 0) {
        /* Durable: every write of this file that had completed when the
         * sync was issued.  Writes completed during the sync are counted too:
         * a test that errs towards durable only makes the check weaker. */
        for (struct undo *u = F.head, *n; u; u = n) {
            n = u->next;
            if (u->fd == fd && u->completed)
                undo_unlink(u);
        }
    }
    pthread_mutex_unlock(&F.lock);
}

void io_crashsim_enable(void)
{
    pthread_mutex_lock(&F.lock);
    F.sim = true;
    atomic_store(&F.active, 1);
    pthread_mutex_unlock(&F.lock);
}

uint64_t io_crashsim_volatile_bytes(void)
{
    pthread_mutex_lock(&F.lock);
    uint64_t n = F.volatile_bytes;
    pthread_mutex_unlock(&F.lock);
    return n;
}

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

void io_crashsim_crash(uint64_t seed)
{
    uint64_t s = seed | 1;
    unsigned dropped = 0, torn = 0, kept = 0;
    pthread_mutex_lock(&F.lock);        /* held to the end: no write is issued after this */
    for (struct undo *u = F.head; u; u = u->next) {
        uint64_t r = next_rand(&s) % 4;
        int fd = plain_fd(u->fd);
        if (fd < 0)
            continue;
        if (r == 0) {
            kept++;
            close(fd);
            continue;                   /* this write reached the disk */
        }
        if (r == 3 && u->len > 512) {
            /* Torn: some sectors new, some old. */
            for (uint32_t o = 0; o < u->len; o += 512)
                if (next_rand(&s) & 1)
                    (void)!pwrite(fd, u->old + o, 512, (off_t)(u->off + o));
            torn++;
        } else {
            (void)!pwrite(fd, u->old, u->len, (off_t)u->off);
            dropped++;
        }
        fsync(fd);
        close(fd);
    }
    fprintf(stderr, "pitcopy: crash simulation: of the writes not yet durable, %u lost, "
            "%u torn, %u kept; exiting now\n", dropped, torn, kept);
    _exit(137);
}
