/* SPDX-License-Identifier: MIT */
/* Description: nbd/ against real clients (nbdinfo, qemu-io, qemu-img, nbdcopy, fio) as child processes, PIT copy included; both backends. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "engineutil.h"
#include "nbdutil.h"
#include "testutil.h"

#define VSIZE (16u * TU_MIB)

struct fx {
    struct tu_eng *f;
    struct tu_nbd  n;
    struct tu_vol *v1, *v2;
    char           u1[1024], u2[1024], u0[1024];
};

static int fx_setup(void **state)
{
    struct fx *x = calloc(1, sizeof *x);

    if (!x || tu_eng_setup(state) != 0)
        return -1;
    x->f = *state;
    *state = x;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *x = *state;

    if (x->n.s)
        tu_nbd_stop(&x->n);
    *state = x->f;
    tu_eng_teardown(state);
    free(x);
    return 0;
}

/* Skips when the backend was refused or a client is missing (environment). */
static struct fx *fx_get(void **state, const char *const *clients)
{
    struct fx *x = *state;
    void *inner = x->f;

    tu_eng_get(&inner);
    for (; clients && *clients; clients++)
        if (!tu_have(*clients)) {
            printf("%s is not installed: skipping\n", *clients);
            skip();
        }
    x->v1 = tu_vol_new(x->f, "v1", VSIZE);
    x->v2 = tu_vol_new(x->f, "v2", VSIZE);
    tu_nbd_start(x->f, &x->n);
    tu_nbd_uri(&x->n, "v1", x->u1, sizeof x->u1);
    tu_nbd_uri(&x->n, "v2", x->u2, sizeof x->u2);
    tu_nbd_uri(&x->n, "", x->u0, sizeof x->u0);
    return x;
}

#define BOTH(fn) \
    { #fn "/uring", fn, fx_setup, fx_teardown, (void *)"uring" }, \
    { #fn "/aio",   fn, fx_setup, fx_teardown, (void *)"aio" }

/* A file of VSIZE random bytes in the fixture directory; its bytes in img. */
static void make_image(struct fx *x, const char *name, uint64_t seed, uint8_t *img)
{
    char path[4096];
    FILE *fp;

    snprintf(path, sizeof path, "%s/%s", x->f->dir, name);
    tu_fill(img, VSIZE, seed);
    fp = fopen(path, "w");
    assert_non_null(fp);
    assert_int_equal(fwrite(img, 1, VSIZE, fp), VSIZE);
    assert_int_equal(fclose(fp), 0);
}

/* ------------------------------------------------------------------------ */

static void test_nbdinfo(void **state)
{
    static const char *const need[] = { "nbdinfo", NULL };
    struct fx *x = fx_get(state, need);

    assert_int_equal(tu_sh("nbdinfo --list \"%s\" | grep -q \"export=\\\"v2\\\"\"", x->u0), 0);
    assert_int_equal(tu_sh("test \"$(nbdinfo --size \"%s\")\" = %u", x->u1, VSIZE), 0);
    assert_int_equal(tu_sh("nbdinfo \"%s\" > %s/info.txt", x->u1, x->f->dir), 0);
    assert_int_equal(tu_sh("grep -q \"block_size_minimum: 4096\" %s/info.txt && "
                           "grep -q \"block_size_preferred: 65536\" %s/info.txt && "
                           "grep -q \"block_size_maximum: 33554432\" %s/info.txt && "
                           "grep -q \"can_multi_conn: true\" %s/info.txt && "
                           "grep -q \"can_fua: true\" %s/info.txt && "
                           "grep -q \"base:allocation\" %s/info.txt",
                           x->f->dir, x->f->dir, x->f->dir, x->f->dir, x->f->dir, x->f->dir), 0);
    /* A fresh sparse volume: one extent, a hole that reads as zeros
     * (base:allocation; engine/thin.c). */
    assert_int_equal(tu_sh("nbdinfo --map \"%s\" > %s/map.txt && cat %s/map.txt && "
                           "test $(wc -l < %s/map.txt) = 1 && "
                           "grep -Eq \"^ *0 +%u +3 +hole,zero\" %s/map.txt",
                           x->u1, x->f->dir, x->f->dir, x->f->dir, VSIZE, x->f->dir), 0);
    /* The default export is refused (our message text is checked in
     * test-nbd-proto: libnbd 1.14 does not print it). */
    assert_int_equal(tu_sh("nbdinfo \"%s\" 2>&1 | grep -q \"default export\"", x->u0), 0);
    assert_int_not_equal(tu_sh("nbdinfo \"%s\" >/dev/null 2>&1", x->u0), 0);
    assert_int_not_equal(tu_sh("nbdinfo --size \"nbd+unix:///nope?socket=%s\" 2>/dev/null",
                               x->n.sock), 0);
}

static void test_qemu_io(void **state)
{
    static const char *const need[] = { "qemu-io", NULL };
    struct fx *x = fx_get(state, need);
    uint8_t *img = x->v1->img;

    tu_write(x->f, x->v1, 0, VSIZE);    /* data everywhere, so zeroes show */
    assert_int_equal(tu_sh("qemu-io -f raw "
                           "-c \"write -P 0xa5 0 1M\" "
                           "-c \"write -f -P 0x5a 1M 64k\" "
                           "-c \"flush\" "
                           "-c \"write -z 2M 1M\" "
                           "-c \"write -P 0x11 4608 512\" "       /* below the minimum block */
                           "-c \"discard 8M 1M\" "
                           "-c \"read -P 0xa5 0 4608\" "
                           "-c \"read -P 0x11 4608 512\" "
                           "-c \"read -P 0xa5 5120 1043456\" "
                           "-c \"read -P 0x5a 1M 64k\" "
                           "-c \"read -P 0 2M 1M\" "
                           "\"%s\"", x->u1), 0);
    memset(img, 0xa5, TU_MIB);
    memset(img + TU_MIB, 0x5a, 64 * 1024);
    memset(img + 2 * TU_MIB, 0, TU_MIB);
    memset(img + 4608, 0x11, 512);
    /* The protocol lets a discarded range read as anything; ours reads
     * as zeros (a hole), which the model below checks. */
    memset(img + 8 * TU_MIB, 0, TU_MIB);
    tu_check_all(x->f, x->v1);
}

static void test_nbdcopy(void **state)
{
    static const char *const need[] = { "nbdcopy", NULL };
    struct fx *x = fx_get(state, need);

    make_image(x, "in.img", 42, x->v1->img);
    /* Several connections and requests in flight (multi-conn). */
    assert_int_equal(tu_sh("nbdcopy --connections=4 --requests=16 %s/in.img \"%s\"",
                           x->f->dir, x->u1), 0);
    tu_check_all(x->f, x->v1);
    assert_int_equal(tu_sh("nbdcopy \"%s\" %s/out.img && cmp %s/in.img %s/out.img",
                           x->u1, x->f->dir, x->f->dir, x->f->dir), 0);
    /* NBD to NBD. */
    assert_int_equal(tu_sh("nbdcopy \"%s\" \"%s\"", x->u1, x->u2), 0);
    memcpy(x->v2->img, x->v1->img, VSIZE);
    tu_check_all(x->f, x->v2);
}

static void test_qemu_img(void **state)
{
    static const char *const need[] = { "qemu-img", NULL };
    struct fx *x = fx_get(state, need);

    assert_int_equal(tu_sh("qemu-img info --output=json \"%s\" | grep -q '\"virtual-size\": %u'",
                           x->u1, VSIZE), 0);
    make_image(x, "in.img", 7, x->v1->img);
    assert_int_equal(tu_sh("qemu-img convert -n -f raw -O raw %s/in.img \"%s\"",
                           x->f->dir, x->u1), 0);
    assert_int_equal(tu_sh("qemu-img compare -f raw -F raw %s/in.img \"%s\"",
                           x->f->dir, x->u1), 0);
    assert_int_not_equal(tu_sh("qemu-img compare -f raw -F raw %s/in.img \"%s\"",
                               x->f->dir, x->u2), 0);
    tu_check_all(x->f, x->v1);
}

/*
 * The point-in-time copy through NBD: a pattern written by one client, a
 * mapping started, the source overwritten by another; the target reads as
 * the source did at the start, through a third client.
 */
static void test_pit(void **state)
{
    static const char *const need[] = { "nbdcopy", "qemu-io", "qemu-img", NULL };
    struct fx *x = fx_get(state, need);
    struct pc_map *m;

    make_image(x, "before.img", 11, x->v1->img);
    assert_int_equal(tu_sh("nbdcopy %s/before.img \"%s\"", x->f->dir, x->u1), 0);
    m = tu_map(x->f, "m1", x->v1, x->v2, 64 * 1024, 0, 0);
    tu_start(m, x->v1, x->v2);
    /* Partial grains, whole grains, a FUA write and zeroes on the source. */
    assert_int_equal(tu_sh("qemu-io -f raw "
                           "-c \"write -P 0x77 4096 8192\" "
                           "-c \"write -P 0x78 1M 2M\" "
                           "-c \"write -f -P 0x79 5M 4k\" "
                           "-c \"write -z 9M 3M\" "
                           "\"%s\"", x->u1), 0);
    memset(x->v1->img + 4096, 0x77, 8192);
    memset(x->v1->img + TU_MIB, 0x78, 2 * TU_MIB);
    memset(x->v1->img + 5 * TU_MIB, 0x79, 4096);
    memset(x->v1->img + 9 * TU_MIB, 0, 3 * TU_MIB);
    assert_int_equal(tu_sh("qemu-img compare -f raw -F raw %s/before.img \"%s\"",
                           x->f->dir, x->u2), 0);
    assert_int_equal(tu_sh("nbdcopy \"%s\" %s/tgt.img && cmp %s/before.img %s/tgt.img",
                           x->u2, x->f->dir, x->f->dir, x->f->dir), 0);
    tu_check_all(x->f, x->v1);
    tu_check_all(x->f, x->v2);
    /* A write to the target leaves the source alone. */
    assert_int_equal(tu_sh("qemu-io -f raw -c \"write -P 0x33 64k 64k\" \"%s\"", x->u2), 0);
    memset(x->v2->img + 64 * 1024, 0x33, 64 * 1024);
    tu_check_all(x->f, x->v1);
    tu_check_all(x->f, x->v2);
}

static void test_fio_verify(void **state)
{
    static const char *const need[] = { "fio", NULL };
    struct fx *x = fx_get(state, need);

    if (tu_sh("fio --enghelp=nbd >/dev/null 2>&1") != 0) {
        printf("fio has no nbd engine: skipping\n");
        skip();
    }
    /* Four jobs, four connections, each on its own quarter. */
    assert_int_equal(tu_sh("fio --name=verify --ioengine=nbd --uri=\"%s\" --rw=randwrite "
                           "--bs=4k --iodepth=32 --numjobs=4 --size=4M --offset_increment=4M "
                           "--verify=crc32c --verify_fatal=1 --do_verify=1 --verify_state_save=0 "
                           "--group_reporting --output=%s/fio.txt; rc=$?; "
                           "grep -E \"err=|IOPS\" %s/fio.txt; exit $rc",
                           x->u1, x->f->dir, x->f->dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH(test_nbdinfo),
        BOTH(test_qemu_io),
        BOTH(test_nbdcopy),
        BOTH(test_qemu_img),
        BOTH(test_pit),
        BOTH(test_fio_verify),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
