/* SPDX-License-Identifier: MIT */
/*
 * Stopping a mapping while copies into it are in flight: the older target
 * keeps its point in time.
 *
 * Regression: cleaning began as soon as the mapping was marked stopping —
 * a background-copy extent finishing during the stop's grace period ran the
 * driver, which saw the new state and started walking the split bitmap —
 * while copy-on-writes that had chosen the mapping before the stop were
 * still setting bits behind the walk.  Those grains were never cleaned, the
 * mapping left its chain, and the older target read the source's new data.
 * The model test found it (a target differing from the model only where a
 * newer, since restarted, target still held the right bytes).
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

#define GRAIN     (16u << 10)
#define VOL_SIZE  (16u << 20)
#define NWRITERS  3
#define ROUNDS    12

struct writer {
    struct pc_engine *e;
    struct pc_volume *v;
    uint64_t          seed;
    _Atomic bool     *stop;
    pthread_t         th;
    int               err;
};

/* 4 KiB writes at random places of the source, as fast as they complete. */
static void *writer_main(void *arg)
{
    struct writer *w = arg;
    uint8_t *buf = pc_buf_alloc_any(4096);
    uint64_t rs = w->seed;
    while (!atomic_load(w->stop)) {
        uint64_t off = tu_rand_below(&rs, VOL_SIZE / 4096) * 4096;
        tu_fill(buf, 4096, tu_rand(&rs));
        int r = pc_io_sync(w->e, PC_IO_WRITE, w->v, off, 4096, buf, 0);
        if (r) {
            w->err = r;
            break;
        }
    }
    pc_buf_free_any(buf, 4096);
    return NULL;
}

static void run(const char *backend)
{
    struct pc_engine_opts eo = { .workers = 2, .io_backend = backend };
    struct pc_engine *e;
    struct pc_volume *s, *told, *tnew;
    struct pc_error err = { 0 };
    char path[4096];
    char *dir = tu_tmpdir("stoprace");
    uint8_t *image = malloc(VOL_SIZE), *buf = pc_buf_alloc_any(1 << 20);
    uint64_t rs = tu_seed("test-engine-stop-race");

    assert_non_null(dir);
    assert_int_equal(pc_engine_create(&eo, &e, &err), 0);
    snprintf(path, sizeof path, "%s/s", dir);
    assert_int_equal(pc_volume_open(e, "s", path, VOL_SIZE, PC_VOL_CREATE, &s, &err), 0);
    snprintf(path, sizeof path, "%s/told", dir);
    assert_int_equal(pc_volume_open(e, "told", path, VOL_SIZE, PC_VOL_CREATE, &told, &err), 0);
    snprintf(path, sizeof path, "%s/tnew", dir);
    assert_int_equal(pc_volume_open(e, "tnew", path, VOL_SIZE, PC_VOL_CREATE, &tnew, &err), 0);

    for (unsigned round = 0; round < ROUNDS; round++) {
        struct pc_map *mold, *mnew;
        struct pc_map_opts oo = { .name = "old", .source = s, .target = told, .grain_size = GRAIN,
                                  .copy_rate = 0, .clean_rate = PC_RATE_UNLIMITED };
        struct pc_map_opts on = { .name = "new", .source = s, .target = tnew, .grain_size = GRAIN,
                                  .copy_rate = PC_RATE_UNLIMITED, .clean_rate = PC_RATE_UNLIMITED };
        _Atomic bool stop = false;
        struct writer w[NWRITERS];

        /* The source as the older mapping will see it. */
        tu_fill(image, VOL_SIZE, tu_rand(&rs));
        for (uint32_t off = 0; off < VOL_SIZE; off += 1 << 20) {
            memcpy(buf, image + off, 1 << 20);
            assert_int_equal(pc_io_sync(e, PC_IO_WRITE, s, off, 1 << 20, buf, 0), 0);
        }
        assert_int_equal(pc_map_create(e, &oo, &mold, &err), 0);
        assert_int_equal(pc_map_create(e, &on, &mnew, &err), 0);
        assert_int_equal(pc_map_start(mold, &err), 0);
        assert_int_equal(pc_map_start(mnew, &err), 0);

        for (unsigned i = 0; i < NWRITERS; i++) {
            w[i] = (struct writer){ .e = e, .v = s, .seed = tu_rand(&rs), .stop = &stop };
            pthread_create(&w[i].th, NULL, writer_main, &w[i]);
        }
        usleep(1000 + 500 * round);
        /* Background copy and copy-on-writes into "new" are in flight. */
        assert_int_equal(pc_map_stop(mnew, &err), 0);
        usleep(2000);
        atomic_store(&stop, true);
        for (unsigned i = 0; i < NWRITERS; i++) {
            pthread_join(w[i].th, NULL);
            assert_int_equal(w[i].err, 0);
        }
        /* Cleaning ends in stopped, or idle_or_copied if every grain was
         * split by the time of the stop. */
        struct pc_map_info info;
        for (int ms = 0;; ms++) {
            pc_map_info(mnew, &info);
            if (info.state != PC_MAP_STOPPING)
                break;
            if (ms > 60000)
                fail_msg("%s round %u: still stopping after 60 s", backend, round);
            usleep(1000);
        }
        assert_true(info.state == PC_MAP_STOPPED || info.state == PC_MAP_IDLE_OR_COPIED);

        for (uint32_t off = 0; off < VOL_SIZE; off += 1 << 20) {
            assert_int_equal(pc_io_sync(e, PC_IO_READ, told, off, 1 << 20, buf, 0), 0);
            if (memcmp(buf, image + off, 1 << 20) != 0) {
                uint32_t i = 0;
                while (buf[i] == image[off + i])
                    i++;
                fail_msg("%s round %u: older target differs at byte %u (grain %u) after "
                         "the newer mapping was stopped", backend, round, off + i,
                         (off + i) / GRAIN);
            }
        }
        assert_int_equal(pc_map_delete(mold, true, &err), 0);
        assert_int_equal(pc_map_delete(mnew, true, &err), 0);
    }
    pc_buf_free_any(buf, 1 << 20);
    free(image);
    pc_engine_destroy(e);
    tu_rmdir(dir);
}

static void test_stop_race_uring(void **state) { (void)state; run("uring"); }
static void test_stop_race_aio(void **state) { (void)state; run("aio"); }

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_race_uring),
        cmocka_unit_test(test_stop_race_aio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
