/* SPDX-License-Identifier: MIT */
/*
 * Start under load: the point in time falls between writes, never inside one.
 *
 * Writer threads each own a range of the source that spans three grains and
 * rewrite it whole, over and over, every 8-byte word stamped with the write's
 * sequence number.  Neighbours share a grain, so a write in flight across the
 * start and a neighbour's copy-on-write of their common grain would tear the
 * copy if the start did not drain writes in flight; and with background copy
 * at full speed, a large write in flight across the start would land
 * between two extents of the copy.  Meanwhile the mapping is started.  Afterwards the target
 * range must be untorn (one sequence number throughout: the start held new
 * writes and drained the ones in flight) and that number must lie between
 * the last write completed before pc_map_start was called and the last one
 * submitted before it returned.  Repeated, on both backends; the write-hold
 * times are printed (bench/ measures them against a goal).
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "pitcopy.h"
#include "testutil.h"

#define GRAIN     (64u << 10)
#define NWRITERS  4
#define RANGE     (32 * GRAIN)              /* starts mid-grain: spans 33 grains */
#define VOL_SIZE  ((NWRITERS + 2) * RANGE)
#define ROUNDS    60

struct writer {
    struct pc_engine  *e;
    struct pc_volume  *v;
    unsigned           id;
    pthread_t          th;
    _Atomic uint64_t   submitted;   /* seq of the write last submitted */
    _Atomic uint64_t   completed;   /* seq of the write last completed */
    _Atomic bool      *stop;
    int                err;
};

static uint64_t range_off(unsigned id) { return (uint64_t)id * RANGE + GRAIN / 4; }

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint64_t *buf = pc_buf_alloc_any(RANGE);
    /* Sequence numbers run on across rounds: the source keeps the last one. */
    for (uint64_t seq = atomic_load(&w->completed) + 1; !atomic_load(w->stop); seq++) {
        for (size_t i = 0; i < RANGE / 8; i++)
            buf[i] = seq;
        atomic_store(&w->submitted, seq);
        int r = pc_io_sync(w->e, PC_IO_WRITE, w->v, range_off(w->id), RANGE, buf, 0);
        if (r) {
            w->err = r;
            break;
        }
        atomic_store(&w->completed, seq);
    }
    pc_buf_free_any(buf, RANGE);
    return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void run(const char *backend)
{
    struct pc_engine_opts eo = { .workers = 2, .io_backend = backend };
    struct pc_engine *e;
    struct pc_volume *s, *t;
    struct pc_error err = { 0 };
    char path[4096];
    char *dir = tu_tmpdir("hold");
    uint64_t holds[ROUNDS];
    uint64_t *buf = pc_buf_alloc_any(RANGE);

    assert_non_null(dir);
    assert_int_equal(pc_engine_create(&eo, &e, &err), 0);
    snprintf(path, sizeof path, "%s/s", dir);
    assert_int_equal(pc_volume_open(e, "s", path, VOL_SIZE, PC_VOL_CREATE, &s, &err), 0);
    snprintf(path, sizeof path, "%s/t", dir);
    assert_int_equal(pc_volume_open(e, "t", path, VOL_SIZE, PC_VOL_CREATE, &t, &err), 0);

    struct writer w[NWRITERS];
    memset(w, 0, sizeof w);
    for (unsigned round = 0; round < ROUNDS; round++) {
        _Atomic bool stop = false;
        uint64_t lo[NWRITERS], hi[NWRITERS];
        struct pc_map *m;
        struct pc_map_opts mo = { .name = "m", .source = s, .target = t, .grain_size = GRAIN,
                                  .copy_rate = round % 2 ? PC_RATE_UNLIMITED : 0, .clean_rate = -1 };
        struct pc_map_info info;

        assert_int_equal(pc_map_create(e, &mo, &m, &err), 0);
        for (unsigned i = 0; i < NWRITERS; i++) {
            w[i].e = e;
            w[i].v = s;
            w[i].id = i;
            w[i].stop = &stop;
            atomic_store(&w[i].submitted, atomic_load(&w[i].completed));
            pthread_create(&w[i].th, NULL, writer_main, &w[i]);
        }
        usleep(2000 + 100 * round);
        for (unsigned i = 0; i < NWRITERS; i++)
            lo[i] = atomic_load(&w[i].completed);
        assert_int_equal(pc_map_start(m, &err), 0);
        for (unsigned i = 0; i < NWRITERS; i++)
            hi[i] = atomic_load(&w[i].submitted);
        usleep(2000);
        atomic_store(&stop, true);
        for (unsigned i = 0; i < NWRITERS; i++) {
            pthread_join(w[i].th, NULL);
            assert_int_equal(w[i].err, 0);
        }

        for (unsigned i = 0; i < NWRITERS; i++) {
            assert_int_equal(pc_io_sync(e, PC_IO_READ, t, range_off(i), RANGE, buf, 0), 0);
            uint64_t seq = buf[0];
            for (size_t x = 1; x < RANGE / 8; x++) {
                if (buf[x] != seq)
                    fail_msg("%s round %u writer %u: target torn at byte %zu: %llu then %llu",
                             backend, round, i, x * 8, (unsigned long long)seq,
                             (unsigned long long)buf[x]);
            }
            if (seq < lo[i] || seq > hi[i])
                fail_msg("%s round %u writer %u: target holds write %llu, outside [%llu, %llu]",
                         backend, round, i, (unsigned long long)seq,
                         (unsigned long long)lo[i], (unsigned long long)hi[i]);
        }
        pc_map_info(m, &info);
        holds[round] = info.start_hold_ns;
        assert_int_equal(pc_map_delete(m, true, &err), 0);
    }
    qsort(holds, ROUNDS, sizeof holds[0], cmp_u64);
    printf("%s: write hold at start under load: median %.1f us, max %.1f us (%u rounds)\n",
           pc_engine_io_backend(e), holds[ROUNDS / 2] / 1e3, holds[ROUNDS - 1] / 1e3, ROUNDS);
    pc_buf_free_any(buf, RANGE);
    pc_engine_destroy(e);
    tu_rmdir(dir);
}

static void test_hold_uring(void **state) { (void)state; run("uring"); }
static void test_hold_aio(void **state) { (void)state; run("aio"); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_uring),
        cmocka_unit_test(test_hold_aio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
