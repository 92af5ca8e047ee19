/* SPDX-License-Identifier: MIT */
/*
 * engine/volume.c — volumes: a file or a block device behind a name.
 *
 * Role
 *   Opens the backing store with O_DIRECT where the filesystem allows it
 *   (buffered otherwise, said once in the log), checks its size, and
 *   registers its fd with every worker's ring as a fixed file.
 *
 * Invariants
 *   V1  size is a non-zero multiple of PC_BLOCK_SIZE and never changes.
 *   V2  A volume in any mapping (as source or target), or held by
 *       pc_volume_get (an NBD export in use), cannot be closed.
 *
 * Locking
 *   The volume list changes under ctl_lock and vol_lock; lookups from
 *   workers (NBD handshakes) take vol_lock only, briefly.
 *
 * Context
 *   Control calls: non-worker threads, under ctl_lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine/internal.h"

struct reg_msg {
    struct io_msg       msg;
    struct pc_volume   *v;
    bool                add;
    _Atomic unsigned   *left;
};

static void reg_on_worker(struct io_msg *msg)
{
    struct reg_msg *r = msg->priv;
    struct pc_worker *w = pc_worker_self();
    if (r->add)
        (void)io_loop_add_file(w->loop, r->v->fd);   /* plain fd if refused */
    else
        io_loop_remove_file(w->loop, r->v->fd);
    atomic_fetch_sub(r->left, 1);
}

void volume_files_register(struct pc_volume *v, bool add)
{
    struct pc_engine *e = v->e;
    _Atomic unsigned left = e->nworkers;
    struct reg_msg *msgs = calloc(e->nworkers, sizeof *msgs);
    if (!msgs)
        return;   /* registration is an optimisation; plain fds work */
    for (unsigned i = 0; i < e->nworkers; i++) {
        msgs[i].v = v;
        msgs[i].add = add;
        msgs[i].left = &left;
        engine_post(&e->workers[i], &msgs[i].msg, reg_on_worker, &msgs[i]);
    }
    while (atomic_load(&left))
        usleep(50);
    free(msgs);
}

/*
 * A writer counts itself in (cow.c) and then tests hold; we set hold and
 * then read the counts.  Both sides are sequentially consistent, so either
 * the writer sees the hold and queues, or we see its count and wait for it.
 */
void volume_drain_writes(struct pc_volume *v)
{
    for (unsigned spins = 0;; spins++) {
        int64_t sum = 0;
        for (unsigned i = 0; i < v->e->nworkers; i++)
            sum += atomic_load(&v->wr_inflight[i].n);
        if (sum == 0)
            return;
        if (spins > 1000)
            usleep(10);
    }
}

/* Under vol_lock (or ctl_lock, which every list change also holds). */
static struct pc_volume *find_locked(struct pc_engine *e, const char *name)
{
    for (struct pc_volume *v = e->volumes; v; v = v->next)
        if (strcmp(v->name, name) == 0)
            return v;
    return NULL;
}

struct pc_volume *pc_volume_find(struct pc_engine *e, const char *name)
{
    pthread_mutex_lock(&e->vol_lock);
    struct pc_volume *v = find_locked(e, name);
    pthread_mutex_unlock(&e->vol_lock);
    return v;
}

struct pc_volume *pc_volume_get(struct pc_engine *e, const char *name)
{
    pthread_mutex_lock(&e->vol_lock);
    struct pc_volume *v = find_locked(e, name);
    if (v)
        v->refs++;
    pthread_mutex_unlock(&e->vol_lock);
    return v;
}

void pc_volume_put(struct pc_volume *v)
{
    pthread_mutex_lock(&v->e->vol_lock);
    v->refs--;
    pthread_mutex_unlock(&v->e->vol_lock);
}

unsigned pc_volume_list(struct pc_engine *e,
                        void (*fn)(struct pc_volume *v, void *arg), void *arg)
{
    unsigned n = 0;
    pthread_mutex_lock(&e->vol_lock);
    for (struct pc_volume *v = e->volumes; v; v = v->next, n++)
        if (fn)
            fn(v, arg);
    pthread_mutex_unlock(&e->vol_lock);
    return n;
}

static int volume_size_of(int fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (S_ISBLK(st.st_mode)) {
        uint64_t b;
        if (ioctl(fd, BLKGETSIZE64, &b) < 0)
            return -errno;
        *size = b;
        return 0;
    }
    if (!S_ISREG(st.st_mode))
        return -ENOTBLK;
    *size = (uint64_t)st.st_size;
    return 0;
}

int pc_volume_open(struct pc_engine *e, const char *name, const char *path,
                   uint64_t size, unsigned flags, struct pc_volume **out,
                   struct pc_error *err)
{
    struct pc_volume *v;
    uint64_t have = 0;
    int fd = -1, r;
    bool direct = !(flags & PC_VOL_BUFFERED), created = false;

    if (!engine_name_ok(name)) {
        pc_error_set(err, -EINVAL, "volume name '%s' is not " ENGINE_NAME_RULE, name);
        return -EINVAL;
    }
    if (size % PC_BLOCK_SIZE) {
        pc_error_set(err, -EINVAL, "volume %s: size %llu is not a multiple of %u bytes",
                     name, (unsigned long long)size, PC_BLOCK_SIZE);
        return -EINVAL;
    }
    pthread_mutex_lock(&e->ctl_lock);
    if (find_locked(e, name)) {
        pthread_mutex_unlock(&e->ctl_lock);
        pc_error_set(err, -EEXIST, "volume %s already exists", name);
        return -EEXIST;
    }
    int oflags = O_RDWR | O_CLOEXEC;
    if ((flags & PC_VOL_CREATE) && size) {
        fd = open(path, oflags | O_CREAT | O_EXCL, 0600);
        if (fd >= 0)
            created = true;
        else if (errno == EEXIST)
            fd = open(path, oflags);
    } else {
        fd = open(path, oflags);
    }
    if (fd < 0) {
        r = -errno;
        pc_error_set(err, r, "volume %s: cannot open %s: %s", name, path, strerror(-r));
        goto fail;
    }
    if (created && ftruncate(fd, (off_t)size) < 0) {
        r = -errno;
        pc_error_set(err, r, "volume %s: cannot size %s to %llu bytes: %s", name, path,
                     (unsigned long long)size, strerror(-r));
        unlink(path);
        goto fail;
    }
    r = volume_size_of(fd, &have);
    if (r < 0) {
        pc_error_set(err, r, "volume %s: %s is not a regular file or block device: %s",
                     name, path, strerror(-r));
        goto fail;
    }
    if (size && have != size) {
        r = -EINVAL;
        pc_error_set(err, r, "volume %s: %s is %llu bytes, not the %llu asked for",
                     name, path, (unsigned long long)have, (unsigned long long)size);
        goto fail;
    }
    if (have == 0 || have % PC_BLOCK_SIZE) {
        r = -EINVAL;
        pc_error_set(err, r, "volume %s: %s is %llu bytes, not a non-zero multiple of %u",
                     name, path, (unsigned long long)have, PC_BLOCK_SIZE);
        goto fail;
    }
    if (direct) {
        /* Reopen with O_DIRECT now that the file exists at its size;
         * filesystems without direct I/O (older tmpfs) refuse it. */
        int dfd = open(path, oflags | O_DIRECT);
        if (dfd >= 0) {
            close(fd);
            fd = dfd;
        } else {
            direct = false;
            pc_log("volume %s: %s does not support O_DIRECT (%s); using buffered I/O",
                   name, path, strerror(errno));
        }
    }

    v = calloc(1, sizeof *v);
    if (!v) {
        r = -ENOMEM;
        pc_error_set(err, r, "volume %s: out of memory", name);
        goto fail;
    }
    if (posix_memalign((void **)&v->wr_inflight, 64, e->nworkers * sizeof *v->wr_inflight)) {
        free(v);
        r = -ENOMEM;
        pc_error_set(err, r, "volume %s: out of memory", name);
        goto fail;
    }
    memset(v->wr_inflight, 0, e->nworkers * sizeof *v->wr_inflight);
    v->e = e;
    snprintf(v->name, sizeof v->name, "%s", name);
    snprintf(v->path, sizeof v->path, "%s", path);
    v->fd = fd;
    v->size = have;
    v->direct = direct;
    v->id = e->next_vol_id++;
    pthread_mutex_init(&v->hold_lock, NULL);
    pthread_mutex_lock(&e->vol_lock);
    v->next = e->volumes;
    e->volumes = v;
    pthread_mutex_unlock(&e->vol_lock);
    pthread_mutex_unlock(&e->ctl_lock);

    volume_files_register(v, true);
    if (out)
        *out = v;
    return 0;

fail:
    pthread_mutex_unlock(&e->ctl_lock);
    if (fd >= 0)
        close(fd);
    return r;
}

int pc_volume_close(struct pc_volume *v, struct pc_error *err)
{
    struct pc_engine *e = v->e;
    pthread_mutex_lock(&e->ctl_lock);
    if (v->nmaps_as_source || atomic_load(&v->tgt_map)) {
        pthread_mutex_unlock(&e->ctl_lock);
        pc_error_set(err, -EBUSY, "volume %s is in a mapping; delete the mapping first", v->name);
        return -EBUSY;
    }
    pthread_mutex_lock(&e->vol_lock);
    if (v->refs) {
        unsigned refs = v->refs;
        pthread_mutex_unlock(&e->vol_lock);
        pthread_mutex_unlock(&e->ctl_lock);
        pc_error_set(err, -EBUSY, "volume %s is in use (%u open export%s); disconnect first",
                     v->name, refs, refs == 1 ? "" : "s");
        return -EBUSY;
    }
    for (struct pc_volume **pp = &e->volumes; *pp; pp = &(*pp)->next) {
        if (*pp == v) {
            *pp = v->next;
            break;
        }
    }
    pthread_mutex_unlock(&e->vol_lock);
    pthread_mutex_unlock(&e->ctl_lock);
    /* Requests already submitted against v finish first (V2 covers the
     * mappings; the caller guarantees no new requests). */
    srcu_sync(e);
    volume_files_register(v, false);
    close(v->fd);
    pthread_mutex_destroy(&v->hold_lock);
    free(v->wr_inflight);
    free(v);
    return 0;
}

const char *pc_volume_name(const struct pc_volume *v) { return v->name; }
uint64_t pc_volume_size(const struct pc_volume *v) { return v->size; }
bool pc_volume_direct(const struct pc_volume *v) { return v->direct; }
