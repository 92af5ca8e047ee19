/* SPDX-License-Identifier: MIT */
/*
 * io/pool.c — aligned I/O buffers: one arena per pool, power-of-two classes.
 *
 * Role
 *   The arena is one anonymous mapping, 2 MiB aligned so transparent huge
 *   pages can back it (fewer TLB misses, fewer pages for io_uring to pin).
 *   A buffer of class c (4 KiB << c) is carved from a bump pointer the first
 *   time and recycled through the class's free list afterwards; the list is
 *   threaded through the free buffers themselves, so the pool never
 *   allocates.  Arena memory is never split or coalesced between classes:
 *   the engine uses a few sizes (grains, journal pages), and a pool that
 *   runs short falls back to the heap, which is correct, only slower (no
 *   fixed-buffer path).
 *
 * Invariants
 *   P1, P2 (pool.h), and:
 *   P3  Arena buffers and heap buffers are both sized by class: a buffer
 *       from io_pool_get(len) is 4 KiB << class(len) bytes, so io_pool_put
 *       may be given any len of the same class (normally the same len).
 *   P4  bump is a multiple of 4096 and ≤ arena_len; [0, bump) is carved.
 *
 * Context
 *   Owner thread only; no locks.  io_alloc_aligned/io_free_aligned: any
 *   thread.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#ifndef PC_NO_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "io/pool.h"

#define POOL_ALIGN      4096u
#define POOL_ARENA_ROUND (2u << 20)       /* a huge page */
#define POOL_MIN_SHIFT  12                /* IO_POOL_MIN_BUF */
#define POOL_NR_CLASSES 14                /* 4 KiB .. 32 MiB */

_Static_assert(IO_POOL_MIN_BUF == 1u << POOL_MIN_SHIFT, "class 0 is IO_POOL_MIN_BUF");
_Static_assert(IO_POOL_MAX_BUF == IO_POOL_MIN_BUF << (POOL_NR_CLASSES - 1),
               "the last class is IO_POOL_MAX_BUF");

struct pool_free {
    struct pool_free *next;
};

struct io_pool {
    char             *arena;        /* NULL: no arena */
    size_t            arena_len;
    size_t            bump;         /* P4 */
    struct pool_free *free[POOL_NR_CLASSES];
};

/* Smallest class holding len (len ≤ IO_POOL_MAX_BUF). */
static unsigned pool_class(size_t len)
{
    if (len <= IO_POOL_MIN_BUF)
        return 0;
    return (unsigned)(64 - __builtin_clzll((unsigned long long)(len - 1))) - POOL_MIN_SHIFT;
}

static size_t pool_class_size(unsigned c)
{
    return (size_t)IO_POOL_MIN_BUF << c;
}

static size_t round_up(size_t v, size_t to)
{
    return (v + to - 1) / to * to;
}

/* ------------------------------------------------------------------------
 * The heap: jemalloc knows alignment and the size at free time (sdallocx
 * skips its size lookup); sanitizer builds use libc so their allocator sees
 * every buffer.
 */

static void *heap_alloc(size_t len)
{
#ifndef PC_NO_JEMALLOC
    return mallocx(len, MALLOCX_ALIGN(POOL_ALIGN));
#else
    void *p;

    return posix_memalign(&p, POOL_ALIGN, len) == 0 ? p : NULL;
#endif
}

static void heap_free(void *p, size_t len)
{
#ifndef PC_NO_JEMALLOC
    sdallocx(p, len, MALLOCX_ALIGN(POOL_ALIGN));
#else
    (void)len;
    free(p);
#endif
}

void *io_alloc_aligned(size_t len)
{
    return heap_alloc(round_up(len ? len : 1, POOL_ALIGN));
}

void io_free_aligned(void *buf, size_t len)
{
    if (buf)
        heap_free(buf, round_up(len ? len : 1, POOL_ALIGN));
}

/* ------------------------------------------------------------------------
 * The pool
 */

/* A 2 MiB-aligned anonymous mapping of len bytes (a multiple of 2 MiB). */
static void *arena_map(size_t len)
{
    size_t over = len + POOL_ARENA_ROUND;
    char *p = mmap(NULL, over, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    char *a;

    if (p == MAP_FAILED)
        return NULL;
    a = (char *)round_up((uintptr_t)p, POOL_ARENA_ROUND);
    if (a > p)
        munmap(p, (size_t)(a - p));
    if (a + len < p + over)
        munmap(a + len, (size_t)(p + over - (a + len)));
    /* Advice only: THP may be disabled, and that is fine. */
    madvise(a, len, MADV_HUGEPAGE);
    return a;
}

int io_pool_create(size_t arena_bytes, struct io_pool **out)
{
    struct io_pool *p;

    *out = NULL;
    if (arena_bytes > SIZE_MAX - 2 * POOL_ARENA_ROUND)
        return -EINVAL;
    p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    if (arena_bytes) {
        p->arena_len = round_up(arena_bytes, POOL_ARENA_ROUND);
        p->arena = arena_map(p->arena_len);
        if (!p->arena) {
            free(p);
            return -ENOMEM;
        }
    }
    *out = p;
    return 0;
}

void io_pool_destroy(struct io_pool *p)
{
    if (!p)
        return;
    /* Heap buffers still out belong to their holders; arena ones die here. */
    if (p->arena)
        munmap(p->arena, p->arena_len);
    free(p);
}

void *io_pool_arena(const struct io_pool *p, size_t *len)
{
    *len = p->arena ? p->arena_len : 0;
    return p->arena;
}

static bool pool_owns(const struct io_pool *p, const void *buf)
{
    return p->arena && (const char *)buf >= p->arena &&
           (const char *)buf < p->arena + p->arena_len;
}

void *io_pool_get(struct io_pool *p, size_t len)
{
    unsigned c;
    size_t sz;

    if (len > IO_POOL_MAX_BUF)
        return NULL;
    c = pool_class(len);
    sz = pool_class_size(c);
    if (p->free[c]) {
        struct pool_free *f = p->free[c];

        p->free[c] = f->next;
        return f;
    }
    if (p->arena_len - p->bump >= sz) {
        void *buf = p->arena + p->bump;

        p->bump += sz;                  /* P4: sz is a multiple of 4096 */
        return buf;
    }
    return heap_alloc(sz);              /* P3 */
}

void io_pool_put(struct io_pool *p, void *buf, size_t len)
{
    unsigned c;

    if (!buf)
        return;
    assert(len <= IO_POOL_MAX_BUF);
    c = pool_class(len);
    if (pool_owns(p, buf)) {            /* P2 */
        struct pool_free *f = buf;

        f->next = p->free[c];
        p->free[c] = f;
        return;
    }
    heap_free(buf, pool_class_size(c));  /* P3 */
}
