/* SPDX-License-Identifier: MIT */
/*
 * Model test: random concurrent I/O and mapping operations, every read
 * checked against an in-memory reference model, on both I/O backends.
 *
 * The model knows what every byte of every volume must read as:
 *   - a write sets the bytes it wrote; a zeroing (PC_IO_ZERO: NBD TRIM and
 *     WRITE_ZEROES, made a hole where the file allows) sets them to zero;
 *   - starting a mapping S → T makes T read as S did at that instant, and
 *     starting a consistency group does so for all its mappings at once;
 *   - starting a restore T → S (S → T existing) makes S read as T did;
 *   - a target whose mapping was stopped before its copy was complete is
 *     offline (reads and writes fail with EIO) until the mapping is started
 *     again or deleted, and after a delete its bytes are unknown (unchecked)
 *     until written;
 *   - nothing else — background copy, cleaning, rate changes, the other
 *     mappings of a source starting and stopping — changes what anything reads.
 *
 * Client threads run at once, each issuing random reads, writes (some of
 * them all zeros, which copies and merges turn into holes), zeroings (4 KiB
 * multiples at any offset, unaligned to grains, spanning grains) and mapping
 * operations.  Two operations never touch the same bytes of one volume at
 * once (a range lock in the test), so the expected result is exact; but a
 * source and its targets are different volumes, so copy-on-write, redirected
 * reads, target writes, background copy and cleaning all race on the same
 * grains.  A mapping start locks its source and target whole (the model
 * needs one instant); test-engine-hold covers starts under writes.
 *
 * The durable variants give every mapping a metadata file (engine/meta.c,
 * durability strict), so every split bit goes through the committer's
 * group commit before the operation that set it completes.
 *
 *   PITCOPY_MODEL_OPS   operations per backend (default 100000; a quarter
 *                       of it for the durable variants)
 *   PITCOPY_MODEL_TARGETS, PITCOPY_MODEL_GRAIN   fix what is otherwise random
 *   PITCOPY_SEED        replay a run (the schedule of threads still varies)
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "pitcopy.h"
#include "engine/internal.h"   /* white box: the diagnosis of a violation */
#include "testutil.h"

#define NSRC        2
#define MAXT        8
#define VOL_SIZE    (4u << 20)
#define BLK         4096u
#define NBLK        (VOL_SIZE / BLK)
#define NTHREADS    6
#define MAX_IO      (256u << 10)

struct mvol {
    struct pc_volume *v;
    uint8_t          *data;          /* expected bytes */
    uint8_t           known[NBLK];   /* 1: data is what the volume must read */
    uint8_t           busy[NBLK];    /* range lock */
    bool              offline;       /* expect EIO */
    int               excl;          /* a control op waits for the whole volume */
};

struct mmap_slot {
    struct pc_map *m;                /* NULL: no mapping to this target */
};

struct model {
    struct pc_engine *e;
    char             *dir;
    bool              durable;       /* mappings keep metadata files */
    unsigned          ntgt[NSRC];
    uint32_t          grain[NSRC];
    struct mvol       src[NSRC];
    struct mvol       tgt[NSRC][MAXT];
    struct mmap_slot  map[NSRC][MAXT];
    pthread_mutex_t   lock;          /* range locks, model state */
    pthread_cond_t    cond;
    pthread_mutex_t   map_lock[NSRC];/* one control op per source at a time */
    _Atomic uint64_t  ops_left;
    _Atomic int       failed;
    uint64_t          seed;
    /* statistics */
    _Atomic uint64_t  n_read, n_write, n_zero, n_zwrite, n_start, n_stop, n_delete, n_create,
                      n_rate, n_eio;
    _Atomic uint64_t  n_group, n_group_maps, n_restore, n_restore_done;
    /* A restore of source s under way (map_lock[s]): R goes tgt[s][restore_t[s]] -> src[s]. */
    struct pc_map    *restore[NSRC];
    unsigned          restore_t[NSRC];
};

static void violation(struct model *md, const char *fmt, ...)
{
    va_list ap;
    char msg[512];
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (atomic_exchange(&md->failed, 1) == 0)
        fprintf(stderr, "MODEL VIOLATION (seed %llu): %s\n", (unsigned long long)md->seed, msg);
}

/* ------------------------------------------------------------------ locks */

static bool range_free(struct mvol *v, unsigned b0, unsigned nb)
{
    for (unsigned b = b0; b < b0 + nb; b++)
        if (v->busy[b])
            return false;
    return true;
}

/* Try to lock a range for I/O: no waiting (the caller picks another). */
static bool lock_range(struct model *md, struct mvol *v, unsigned b0, unsigned nb)
{
    bool ok;
    pthread_mutex_lock(&md->lock);
    ok = !v->excl && range_free(v, b0, nb);
    if (ok)
        memset(v->busy + b0, 1, nb);
    pthread_mutex_unlock(&md->lock);
    return ok;
}

static void unlock_range(struct model *md, struct mvol *v, unsigned b0, unsigned nb)
{
    pthread_mutex_lock(&md->lock);
    memset(v->busy + b0, 0, nb);
    pthread_cond_broadcast(&md->cond);
    pthread_mutex_unlock(&md->lock);
}

/* Lock volumes whole (control ops).  New I/O stays off them meanwhile. */
static void lock_whole(struct model *md, struct mvol **vs, unsigned n)
{
    pthread_mutex_lock(&md->lock);
    for (unsigned i = 0; i < n; i++)
        vs[i]->excl++;
    for (;;) {
        bool ok = true;
        for (unsigned i = 0; i < n && ok; i++)
            ok = range_free(vs[i], 0, NBLK);
        if (ok)
            break;
        pthread_cond_wait(&md->cond, &md->lock);
    }
    for (unsigned i = 0; i < n; i++)
        memset(vs[i]->busy, 1, NBLK);
    pthread_mutex_unlock(&md->lock);
}

static void unlock_whole(struct model *md, struct mvol **vs, unsigned n)
{
    pthread_mutex_lock(&md->lock);
    for (unsigned i = 0; i < n; i++) {
        vs[i]->excl--;
        memset(vs[i]->busy, 0, NBLK);
    }
    pthread_cond_broadcast(&md->cond);
    pthread_mutex_unlock(&md->lock);
}

/* -------------------------------------------------------------------- I/O */

/*
 * After a violation: where does the expected block live?  For every volume
 * of the source, its raw file's block against the expected bytes, and for
 * every mapping its state, place in the chain and bit for the grain.
 */
static void dump_block(struct model *md, unsigned s, unsigned b, const uint8_t *want)
{
    uint8_t *raw = pc_buf_alloc_any(BLK);
    struct pc_volume *src = md->src[s].v;
    struct chain *c = atomic_load(&src->chain);
    uint64_t g = ((uint64_t)b * BLK) / md->grain[s];
    fprintf(stderr, "  block %u, grain %llu of source %s; chain of %u:\n", b,
            (unsigned long long)g, pc_volume_name(src), c ? c->n : 0);
    struct pc_map *rm = atomic_load(&src->restore_by);
    if (rm || md->restore[s])
        fprintf(stderr, "   restore %s (model: %s from tgt%u.%u): %s restoring=%d bit=%d\n",
                rm ? rm->name : "-", md->restore[s] ? md->restore[s]->name : "-", s,
                md->restore_t[s], rm ? pc_map_state_name(map_state(rm)) : "-",
                rm ? atomic_load(&rm->restoring) : -1,
                rm && rm->bits ? bitmap_test(rm->bits, g) : -1);
    for (int t = -1; t < (int)md->ntgt[s]; t++) {
        struct mvol *mv = t < 0 ? &md->src[s] : &md->tgt[s][t];
        ssize_t n = pread(mv->v->fd, raw, BLK, (off_t)b * BLK);
        bool same = n == BLK && memcmp(raw, want, BLK) == 0;
        struct pc_map *m = t < 0 ? NULL : md->map[s][t].m;
        if (!m) {
            fprintf(stderr, "   %-8s raw %s\n", pc_volume_name(mv->v), same ? "== expected" : "differs");
            continue;
        }
        fprintf(stderr, "   %-8s raw %s  map %s %s complete=%d in_chain=%d pos=%d bit=%d\n",
                pc_volume_name(mv->v), same ? "== expected" : "differs", m->name,
                pc_map_state_name(map_state(m)), atomic_load(&m->complete),
                atomic_load(&m->in_chain), chain_index(c, m),
                m->bits ? bitmap_test(m->bits, g) : -1);
    }
    pc_buf_free_any(raw, BLK);
}

static void check_read(struct model *md, struct mvol *v, unsigned b0, unsigned nb,
                       const uint8_t *buf)
{
    for (unsigned b = b0; b < b0 + nb; b++) {
        if (!v->known[b])
            continue;
        const uint8_t *want = v->data + (size_t)b * BLK, *got = buf + (size_t)(b - b0) * BLK;
        if (memcmp(want, got, BLK) == 0)
            continue;
        unsigned i = 0;
        while (want[i] == got[i])
            i++;
        struct pc_map *m = NULL;
        for (unsigned s = 0; s < NSRC; s++)
            for (unsigned t = 0; t < md->ntgt[s]; t++)
                if (&md->tgt[s][t] == v)
                    m = md->map[s][t].m;
        struct pc_map_info info = { 0 };
        if (m)
            pc_map_info(m, &info);
        violation(md, "volume %s: byte %llu reads 0x%02x, expected 0x%02x "
             "(read of blocks %u-%u; mapping %s %s, %u%% split, grain %u)",
             pc_volume_name(v->v), (unsigned long long)b * BLK + i, got[i], want[i],
             b0, b0 + nb - 1, m ? info.name : "-", m ? pc_map_state_name(info.state) : "-",
             info.progress, info.grain_size);
        for (unsigned s = 0; s < NSRC; s++)
            for (int t = -1; t < (int)md->ntgt[s]; t++)
                if ((t < 0 ? &md->src[s] : &md->tgt[s][t]) == v)
                    dump_block(md, s, b, want);
        return;
    }
}

static void do_io(struct model *md, uint64_t *rs, uint8_t *buf)
{
    /* Sources take more of the traffic: that is where copy-on-write is. */
    unsigned s = (unsigned)tu_rand_below(rs, NSRC);
    struct mvol *v;
    if (tu_rand_below(rs, 100) < 45)
        v = &md->src[s];
    else
        v = &md->tgt[s][tu_rand_below(rs, md->ntgt[s])];

    unsigned nb = 1 + (unsigned)tu_rand_below(rs, tu_rand_below(rs, 4) ? 8 : MAX_IO / BLK);
    unsigned b0 = (unsigned)tu_rand_below(rs, NBLK - nb + 1);
    if (!lock_range(md, v, b0, nb))
        return;
    unsigned dice = (unsigned)tu_rand_below(rs, 100);
    bool write = dice < 50;
    bool zero = dice < 8;            /* PC_IO_ZERO: a hole */
    size_t len = (size_t)nb * BLK;
    bool offline = v->offline;       /* stable: changed only under whole-volume locks */
    int r;

    if (zero) {
        r = pc_io_sync(md->e, PC_IO_ZERO, v->v, (uint64_t)b0 * BLK, (uint32_t)len, NULL,
                       tu_rand_below(rs, 8) == 0 ? PC_IO_FUA : 0);
        memset(buf, 0, len);
        atomic_fetch_add(&md->n_zero, 1);
    } else if (write) {
        if (dice < 16) {
            memset(buf, 0, len);     /* zeros written: grains copied as holes */
            atomic_fetch_add(&md->n_zwrite, 1);
        } else {
            tu_fill(buf, len, tu_rand(rs));
        }
        r = pc_io_sync(md->e, PC_IO_WRITE, v->v, (uint64_t)b0 * BLK, (uint32_t)len, buf,
                       tu_rand_below(rs, 8) == 0 ? PC_IO_FUA : 0);
        atomic_fetch_add(&md->n_write, 1);
    } else {
        r = pc_io_sync(md->e, PC_IO_READ, v->v, (uint64_t)b0 * BLK, (uint32_t)len, buf, 0);
        atomic_fetch_add(&md->n_read, 1);
    }
    if (offline) {
        if (r != -EIO)
            violation(md, "volume %s is offline but a %s returned %d, not -EIO",
                 pc_volume_name(v->v), zero ? "zeroing" : write ? "write" : "read", r);
        atomic_fetch_add(&md->n_eio, 1);
    } else if (r != 0) {
        violation(md, "volume %s: %s of blocks %u-%u failed: %s", pc_volume_name(v->v),
             zero ? "zeroing" : write ? "write" : "read", b0, b0 + nb - 1, strerror(-r));
    } else if (write) {
        memcpy(v->data + (size_t)b0 * BLK, buf, len);
        memset(v->known + b0, 1, nb);
    } else {
        check_read(md, v, b0, nb, buf);
    }
    unlock_range(md, v, b0, nb);
}

/* ------------------------------------------------------------ control ops */

static const int rates[] = { 0, 10, 50, 100, 150, PC_RATE_UNLIMITED, PC_RATE_UNLIMITED };

static int pick_rate(uint64_t *rs)
{
    return rates[tu_rand_below(rs, sizeof rates / sizeof rates[0])];
}

/* After a control op: whether the target is offline now. */
static void refresh_offline(struct mvol *tv, struct pc_map *m)
{
    struct pc_map_info info;
    pc_map_info(m, &info);
    tv->offline = !info.target_online;
}

/* Under map_lock[s]: a finished restore's mapping goes; true while one runs
 * (the engine then refuses to start or stop S's other mappings). */
static bool restore_running(struct model *md, unsigned s)
{
    struct pc_map *r = md->restore[s];
    struct pc_error err = { 0 };
    if (!r)
        return false;
    struct pc_map_info info;
    pc_map_info(r, &info);
    if (info.restoring)
        return true;
    if (info.state != PC_MAP_IDLE_OR_COPIED || !info.complete)
        violation(md, "restore %s ended %s, complete=%d", info.name,
                  pc_map_state_name(info.state), info.complete);
    if (pc_map_delete(r, false, &err))
        violation(md, "delete restore %s: %s", info.name, err.msg);
    md->restore[s] = NULL;
    atomic_fetch_add(&md->n_restore_done, 1);
    return false;
}

/*
 * Restore source s from target t: a mapping tgt -> src started as a restore.
 * The source then reads as the target did; the target and every other
 * target keep their images.  It runs on while the clients go on; the next
 * control op on s that finds it finished deletes it.
 */
static void do_restore(struct model *md, uint64_t *rs, unsigned s)
{
    unsigned t = (unsigned)tu_rand_below(rs, md->ntgt[s]);
    struct mvol *sv = &md->src[s], *tv = &md->tgt[s][t];
    struct pc_map *p = md->map[s][t].m;
    struct pc_error err = { 0 };
    struct pc_map_info pi;
    if (!p)
        return;
    pc_map_info(p, &pi);
    if (!(pi.state == PC_MAP_COPYING || (pi.state == PC_MAP_IDLE_OR_COPIED && pi.complete)))
        return;
    char name[32], meta[4200];
    snprintf(name, sizeof name, "r%u.%u", s, t);
    snprintf(meta, sizeof meta, "%s/%s.pcmeta", md->dir, name);
    struct pc_map_opts o = {
        .name = name, .source = tv->v, .target = sv->v, .grain_size = md->grain[s],
        .copy_rate = pick_rate(rs), .clean_rate = PC_RATE_UNLIMITED,
        .meta_path = md->durable ? meta : NULL,
    };
    struct pc_map *r = NULL;
    if (pc_map_create(md->e, &o, &r, &err)) {
        violation(md, "create restore %s: %s", name, err.msg);
        return;
    }
    struct mvol *both[2] = { sv, tv };
    lock_whole(md, both, 2);
    int rc = pc_map_start_restore(r, &err);
    if (rc == 0) {
        memcpy(sv->data, tv->data, VOL_SIZE);
        memcpy(sv->known, tv->known, NBLK);
        md->restore[s] = r;
        md->restore_t[s] = t;
        atomic_fetch_add(&md->n_restore, 1);
    } else if (rc != -EBUSY) {           /* -EBUSY: one of S's mappings is cleaning */
        violation(md, "restore %s: %s", name, err.msg);
    }
    unlock_whole(md, both, 2);
    if (rc && pc_map_delete(r, true, &err))
        violation(md, "delete unstarted restore %s: %s", name, err.msg);
}

/*
 * A consistency group of startable mappings from both sources, started at
 * one point in time, then deleted (forced: its mappings stay, copying,
 * stand-alone).  Every volume involved is locked whole for the instant.
 */
static void do_group(struct model *md, uint64_t *rs)
{
    struct pc_error err = { 0 };
    struct pc_group *g = NULL;
    struct mvol *vols[2 * NSRC * (MAXT + 1)];
    struct { unsigned s, t; } picked[NSRC * MAXT];
    unsigned nv = 0, np = 0;
    char name[32];

    for (unsigned s = 0; s < NSRC; s++)
        pthread_mutex_lock(&md->map_lock[s]);
    snprintf(name, sizeof name, "cg%llu", (unsigned long long)atomic_load(&md->n_group));
    if (pc_group_create(md->e, name, &g, &err)) {
        violation(md, "group create %s: %s", name, err.msg);
        goto out;
    }
    for (unsigned s = 0; s < NSRC; s++) {
        if (restore_running(md, s))
            continue;
        bool src_in = false;
        for (unsigned t = 0; t < md->ntgt[s]; t++) {
            struct pc_map *m = md->map[s][t].m;
            struct pc_map_info info;
            if (!m || tu_rand_below(rs, 2))
                continue;
            pc_map_info(m, &info);
            if (info.state != PC_MAP_IDLE_OR_COPIED && info.state != PC_MAP_STOPPED)
                continue;           /* G2: only these may join */
            if (info.state == PC_MAP_IDLE_OR_COPIED && info.dependent_mappings)
                continue;           /* still in its chain: a prepare would clean first */
            if (pc_map_set_group(m, g, &err)) {
                violation(md, "join %s to %s: %s", info.name, name, err.msg);
                continue;
            }
            picked[np].s = s;
            picked[np++].t = t;
            vols[nv++] = &md->tgt[s][t];
            if (!src_in) {
                vols[nv++] = &md->src[s];
                src_in = true;
            }
        }
    }
    if (np == 0)
        goto drop;
    lock_whole(md, vols, nv);
    if (pc_group_start(g, &err)) {
        violation(md, "group start %s (%u mappings): %s", name, np, err.msg);
    } else {
        for (unsigned i = 0; i < np; i++) {
            struct mvol *sv = &md->src[picked[i].s], *tv = &md->tgt[picked[i].s][picked[i].t];
            memcpy(tv->data, sv->data, VOL_SIZE);
            memcpy(tv->known, sv->known, NBLK);
            refresh_offline(tv, md->map[picked[i].s][picked[i].t].m);
        }
        atomic_fetch_add(&md->n_group, 1);
        atomic_fetch_add(&md->n_group_maps, np);
    }
    unlock_whole(md, vols, nv);
drop:
    if (pc_group_delete(g, true, &err))
        violation(md, "group delete %s: %s", name, err.msg);
out:
    for (unsigned s = NSRC; s-- > 0;)
        pthread_mutex_unlock(&md->map_lock[s]);
}

static void do_control(struct model *md, uint64_t *rs)
{
    unsigned s = (unsigned)tu_rand_below(rs, NSRC);
    unsigned t = (unsigned)tu_rand_below(rs, md->ntgt[s]);
    struct mvol *sv = &md->src[s], *tv = &md->tgt[s][t];
    struct pc_error err = { 0 };
    int r;

    unsigned kind = (unsigned)tu_rand_below(rs, 100);
    if (kind < 8 && !getenv("PITCOPY_MODEL_NO_GROUPS")) {
        do_group(md, rs);
        return;
    }
    pthread_mutex_lock(&md->map_lock[s]);
    if (restore_running(md, s))
        goto out;                  /* S's mappings wait for the restore */
    if (kind < 14 && !getenv("PITCOPY_MODEL_NO_RESTORES")) {
        do_restore(md, rs, s);
        goto out;
    }
    struct pc_map *m = md->map[s][t].m;
    if (!m) {
        char name[32];
        snprintf(name, sizeof name, "m%u.%u", s, t);
        char meta[4200];
        snprintf(meta, sizeof meta, "%s/%s.pcmeta", md->dir, name);
        struct pc_map_opts o = {
            .name = name, .source = sv->v, .target = tv->v, .grain_size = md->grain[s],
            .copy_rate = pick_rate(rs), .clean_rate = PC_RATE_UNLIMITED,
            .meta_path = md->durable ? meta : NULL,
            /* Half are incremental: a restart after a complete copy then
             * copies only the changed grains, and the check stays exact. */
            .incremental = tu_rand_below(rs, 2) == 1,
        };
        r = pc_map_create(md->e, &o, &md->map[s][t].m, &err);
        if (r)
            violation(md, "create %s: %s", name, err.msg);
        atomic_fetch_add(&md->n_create, 1);
        goto out;
    }

    struct pc_map_info info;
    pc_map_info(m, &info);
    unsigned dice = (unsigned)tu_rand_below(rs, 100);
    switch (info.state) {
    case PC_MAP_IDLE_OR_COPIED:
    case PC_MAP_STOPPED:
    case PC_MAP_PREPARED:
        if (dice < 60) {
            struct mvol *both[2] = { sv, tv };
            lock_whole(md, both, 2);
            r = pc_map_start(m, &err);
            if (r) {
                violation(md, "start %s: %s", info.name, err.msg);
            } else {
                memcpy(tv->data, sv->data, VOL_SIZE);
                memcpy(tv->known, sv->known, NBLK);
                refresh_offline(tv, m);
                if (tv->offline)
                    violation(md, "target of %s offline right after start", info.name);
            }
            unlock_whole(md, both, 2);
            atomic_fetch_add(&md->n_start, 1);
        } else if (dice < 75 && info.state != PC_MAP_PREPARED) {
            lock_whole(md, &tv, 1);
            r = pc_map_prepare(m, &err);
            if (r)
                violation(md, "prepare %s: %s", info.name, err.msg);
            refresh_offline(tv, m);
            unlock_whole(md, &tv, 1);
        } else if (dice < 85 && info.state == PC_MAP_PREPARED) {
            lock_whole(md, &tv, 1);
            r = pc_map_stop(m, &err);
            if (r)
                violation(md, "stop prepared %s: %s", info.name, err.msg);
            refresh_offline(tv, m);
            unlock_whole(md, &tv, 1);
        } else {
            lock_whole(md, &tv, 1);
            bool was_offline = tv->offline;
            r = pc_map_delete(m, false, &err);
            if (r) {
                violation(md, "delete %s: %s", info.name, err.msg);
            } else {
                md->map[s][t].m = NULL;
                if (was_offline)
                    memset(tv->known, 0, NBLK);   /* an incomplete image */
                tv->offline = false;
            }
            unlock_whole(md, &tv, 1);
            atomic_fetch_add(&md->n_delete, 1);
        }
        break;
    case PC_MAP_COPYING:
        if (dice < 50) {
            r = pc_map_set_copy_rate(m, pick_rate(rs), &err);
            if (r)
                violation(md, "set rate %s: %s", info.name, err.msg);
            atomic_fetch_add(&md->n_rate, 1);
        } else if (dice < 85) {
            lock_whole(md, &tv, 1);
            r = pc_map_stop(m, &err);
            /* The copy may have completed since info: then stop is refused. */
            if (r && r != -EINVAL)
                violation(md, "stop %s: %s", info.name, err.msg);
            refresh_offline(tv, m);
            unlock_whole(md, &tv, 1);
            atomic_fetch_add(&md->n_stop, 1);
        } else {
            lock_whole(md, &tv, 1);
            bool complete_before;
            pc_map_info(m, &info);
            complete_before = info.complete;
            r = pc_map_delete(m, true, &err);
            if (r) {
                violation(md, "force delete %s: %s", info.name, err.msg);
            } else {
                md->map[s][t].m = NULL;
                pc_map_info(m, &info);   /* the engine keeps deleted maps' memory */
                if (!info.complete && !complete_before)
                    memset(tv->known, 0, NBLK);
                tv->offline = false;
            }
            unlock_whole(md, &tv, 1);
            atomic_fetch_add(&md->n_delete, 1);
        }
        break;
    default:
        break;   /* stopping / preparing: let it finish */
    }
out:
    pthread_mutex_unlock(&md->map_lock[s]);
}

/* ---------------------------------------------------------------- threads */

struct client {
    struct model *md;
    uint64_t      seed;
    pthread_t     th;
};

static void *client_main(void *arg)
{
    struct client *c = arg;
    struct model *md = c->md;
    uint64_t rs = c->seed;
    uint8_t *buf = pc_buf_alloc_any(MAX_IO);
    if (!buf) {
        violation(md, "out of memory");
        return NULL;
    }
    while (!atomic_load(&md->failed)) {
        uint64_t left = atomic_load(&md->ops_left);
        if (left == 0 || !atomic_compare_exchange_weak(&md->ops_left, &left, left - 1))
            if (left == 0)
                break;
        if (tu_rand_below(&rs, 1000) < 15)
            do_control(md, &rs);
        else
            do_io(md, &rs, buf);
    }
    pc_buf_free_any(buf, MAX_IO);
    return NULL;
}

/* Read every volume whole and compare. */
static void verify_all(struct model *md)
{
    uint8_t *buf = pc_buf_alloc_any(MAX_IO);
    for (unsigned s = 0; s < NSRC; s++) {
        for (int t = -1; t < (int)md->ntgt[s]; t++) {
            struct mvol *v = t < 0 ? &md->src[s] : &md->tgt[s][t];
            for (unsigned b = 0; b < NBLK; b += MAX_IO / BLK) {
                int r = pc_io_sync(md->e, PC_IO_READ, v->v, (uint64_t)b * BLK, MAX_IO, buf, 0);
                if (v->offline) {
                    if (r != -EIO)
                        violation(md, "offline %s read returned %d", pc_volume_name(v->v), r);
                    continue;
                }
                if (r)
                    violation(md, "final read of %s: %s", pc_volume_name(v->v), strerror(-r));
                else
                    check_read(md, v, b, MAX_IO / BLK, buf);
            }
        }
    }
    pc_buf_free_any(buf, MAX_IO);
}

static void run_model(const char *backend, bool durable)
{
    static const uint32_t grains[] = { 4096, 16384, 65536, 262144 };
    struct model *md = calloc(1, sizeof *md);
    struct pc_engine_opts eo = { .workers = 3, .io_backend = backend };
    struct pc_error err = { 0 };
    uint64_t rs;
    char name[32], path[4096];
    assert_non_null(md);

    md->durable = durable;
    md->seed = tu_seed("test-model");
    rs = md->seed;
    md->dir = tu_tmpdir("model");
    assert_non_null(md->dir);
    pthread_mutex_init(&md->lock, NULL);
    pthread_cond_init(&md->cond, NULL);
    for (unsigned s = 0; s < NSRC; s++)
        pthread_mutex_init(&md->map_lock[s], NULL);
    if (pc_engine_create(&eo, &md->e, &err)) {
        fprintf(stderr, "engine: %s\n", err.msg);
        fail_msg("cannot create the engine");
    }
    printf("backend %s (asked for %s)\n", pc_engine_io_backend(md->e), backend);

    for (unsigned s = 0; s < NSRC; s++) {
        md->ntgt[s] = 1 + (unsigned)tu_rand_below(&rs, MAXT);
        md->grain[s] = grains[tu_rand_below(&rs, 4)];
        if (tu_env_u64("PITCOPY_MODEL_TARGETS", 0))
            md->ntgt[s] = (unsigned)tu_env_u64("PITCOPY_MODEL_TARGETS", 1);
        if (tu_env_u64("PITCOPY_MODEL_GRAIN", 0))
            md->grain[s] = (uint32_t)tu_env_u64("PITCOPY_MODEL_GRAIN", 65536);
        for (int t = -1; t < (int)md->ntgt[s]; t++) {
            struct mvol *v = t < 0 ? &md->src[s] : &md->tgt[s][t];
            if (t < 0)
                snprintf(name, sizeof name, "src%u", s);
            else
                snprintf(name, sizeof name, "tgt%u.%d", s, t);
            snprintf(path, sizeof path, "%s/%s", md->dir, name);
            if (pc_volume_open(md->e, name, path, VOL_SIZE, PC_VOL_CREATE, &v->v, &err))
                fail_msg("volume %s: %s", name, err.msg);
            v->data = calloc(1, VOL_SIZE);
            memset(v->known, 1, NBLK);   /* new sparse files read as zeros */
        }
        printf("source %u: %u targets, grain %u KiB\n", s, md->ntgt[s], md->grain[s] >> 10);
    }

    md->ops_left = tu_env_u64("PITCOPY_MODEL_OPS", 100000) / (durable ? 4 : 1);
    struct client cl[NTHREADS];
    for (unsigned i = 0; i < NTHREADS; i++) {
        cl[i].md = md;
        cl[i].seed = md->seed * 31 + i + 1;
        pthread_create(&cl[i].th, NULL, client_main, &cl[i]);
    }
    for (unsigned i = 0; i < NTHREADS; i++)
        pthread_join(cl[i].th, NULL);

    /* Let background work run a while, then check everything whole. */
    verify_all(md);
    for (unsigned s = 0; s < NSRC; s++) {
        if (md->restore[s]) {
            pc_map_set_copy_rate(md->restore[s], PC_RATE_UNLIMITED, NULL);
            if (pc_map_wait(md->restore[s], PC_MAP_IDLE_OR_COPIED, 60000) != 0)
                violation(md, "restore of source %u did not finish at unlimited rate", s);
            restore_running(md, s);
        }
        for (unsigned t = 0; t < md->ntgt[s]; t++)
            if (md->map[s][t].m)
                pc_map_set_copy_rate(md->map[s][t].m, PC_RATE_UNLIMITED, NULL);
    }
    for (unsigned s = 0; s < NSRC; s++)
        for (unsigned t = 0; t < md->ntgt[s]; t++) {
            struct pc_map *m = md->map[s][t].m;
            struct pc_map_info info;
            if (!m)
                continue;
            pc_map_info(m, &info);
            if (info.state == PC_MAP_COPYING &&
                pc_map_wait(m, PC_MAP_IDLE_OR_COPIED, 60000) != 0)
                violation(md, "mapping %s did not finish copying at unlimited rate", info.name);
        }
    verify_all(md);

    printf("%s%s: %llu reads, %llu writes (%llu of zeros), %llu zeroings, "
           "%llu EIO on offline targets, %llu creates, "
           "%llu starts, %llu stops, %llu deletes, %llu rate changes, %llu group starts "
           "(%llu mappings), %llu restores (%llu finished and deleted)\n",
           pc_engine_io_backend(md->e), durable ? " (durable metadata)" : "",
           (unsigned long long)md->n_read, (unsigned long long)md->n_write,
           (unsigned long long)md->n_zwrite, (unsigned long long)md->n_zero,
           (unsigned long long)md->n_eio, (unsigned long long)md->n_create,
           (unsigned long long)md->n_start, (unsigned long long)md->n_stop,
           (unsigned long long)md->n_delete, (unsigned long long)md->n_rate,
           (unsigned long long)md->n_group, (unsigned long long)md->n_group_maps,
           (unsigned long long)md->n_restore, (unsigned long long)md->n_restore_done);

    pc_engine_destroy(md->e);
    int failed = md->failed;
    for (unsigned s = 0; s < NSRC; s++)
        for (int t = -1; t < (int)md->ntgt[s]; t++)
            free(t < 0 ? md->src[s].data : md->tgt[s][t].data);
    tu_rmdir(md->dir);
    uint64_t seed = md->seed;
    free(md);
    if (failed)
        fail_msg("model violations; replay with PITCOPY_SEED=%llu", (unsigned long long)seed);
}

static void test_model_uring(void **state) { (void)state; run_model("uring", false); }
static void test_model_aio(void **state) { (void)state; run_model("aio", false); }
static void test_model_uring_durable(void **state) { (void)state; run_model("uring", true); }
static void test_model_aio_durable(void **state) { (void)state; run_model("aio", true); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_uring),
        cmocka_unit_test(test_model_aio),
        cmocka_unit_test(test_model_uring_durable),
        cmocka_unit_test(test_model_aio_durable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
