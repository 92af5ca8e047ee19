/* SPDX-License-Identifier: MIT */
/*
 * tests/common/engineutil.h — a cmocka fixture for engine tests: an engine
 * with two workers on one I/O backend, volumes as sparse files in a private
 * directory, and beside each volume the image it must read as.
 *
 * Usage: list a test twice with TU_BOTH(test_fn) (once per backend); in the
 * test, struct tu_eng *f = tu_eng_get(state) (skips when the backend was
 * refused), then tu_vol_new(), tu_write(), tu_start(), tu_check_all()...
 * Every helper asserts; a failed check names the volume and the byte.
 */
#ifndef PITCOPY_ENGINEUTIL_H
#define PITCOPY_ENGINEUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pitcopy.h"

#define TU_KIB 1024u
#define TU_MIB (1024u * 1024u)

struct tu_vol {
    struct pc_volume *v;
    char              name[64];
    char              path[4096];
    uint64_t          size;
    uint8_t          *img;        /* what the volume must read as */
    struct tu_vol    *next;       /* the fixture's list */
};

struct tu_eng {
    struct pc_engine *e;
    const char       *backend;    /* asked for */
    char             *dir;
    bool              refused;    /* the engine came up on another backend */
    uint64_t          seed;       /* next pattern seed (tu_write) */
    struct tu_vol    *vols;
};

/* cmocka setup/teardown; the initial state is the backend name. */
int  tu_eng_setup(void **state);
int  tu_eng_teardown(void **state);
/* The fixture; skip() when the engine could not use the backend asked for. */
struct tu_eng *tu_eng_get(void **state);

#define TU_BOTH(fn) \
    { #fn "/uring", fn, tu_eng_setup, tu_eng_teardown, (void *)"uring" }, \
    { #fn "/aio",   fn, tu_eng_setup, tu_eng_teardown, (void *)"aio" }

/* A new sparse volume name of size bytes (img all zero). */
struct tu_vol *tu_vol_new(struct tu_eng *f, const char *name, uint64_t size);

/* pc_io_sync through a bounce buffer; returns its result. */
int  tu_io(struct tu_eng *f, enum pc_io_op op, struct tu_vol *tv, uint64_t off,
           uint32_t len, void *buf);
/* Write a fresh pattern to [off, off+len) and record it in img; asserts 0.
 * One request, or PC_MAX_IO pieces when longer. */
void tu_write(struct tu_eng *f, struct tu_vol *tv, uint64_t off, uint64_t len);
/* Read [off, off+len) and compare with img; fails naming the first bad byte. */
void tu_check(struct tu_eng *f, struct tu_vol *tv, uint64_t off, uint64_t len);
void tu_check_all(struct tu_eng *f, struct tu_vol *tv);
/* Both a read and a write of the first block fail with err (offline target). */
void tu_check_offline(struct tu_eng *f, struct tu_vol *tv);

/* The backing file, read behind the engine's back (pread on a fresh fd). */
void tu_raw_read(struct tu_vol *tv, uint64_t off, size_t len, void *buf);
/* The backing file holds exactly img's bytes / only zeros at [off, off+len). */
bool tu_raw_equals(struct tu_vol *tv, uint64_t off, size_t len, const uint8_t *want);
bool tu_raw_zero(struct tu_vol *tv, uint64_t off, size_t len);

/* pc_map_create, asserting success.  rates as pc_map_opts. */
struct pc_map *tu_map(struct tu_eng *f, const char *name, struct tu_vol *src,
                      struct tu_vol *tgt, uint32_t grain, int copy_rate, int clean_rate);
/* pc_map_start, asserting success; tgt's image becomes src's. */
void tu_start(struct pc_map *m, struct tu_vol *src, struct tu_vol *tgt);
struct pc_map_info tu_info(struct pc_map *m);
/* Waits (30 s at most) for state, asserting it is reached. */
void tu_wait(struct pc_map *m, enum pc_map_state state);

#endif
