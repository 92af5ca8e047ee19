/* SPDX-License-Identifier: MIT */
/*
 * io/pool.h — aligned I/O buffers for one worker thread.
 *
 * Role
 *   O_DIRECT needs buffers aligned to the logical block size; io_uring is
 *   fastest with buffers it has registered once.  A pool owns one arena
 *   (mmap'd, page aligned) carved into power-of-two size classes from 4 KiB to
 *   IO_POOL_MAX_BUF, with a free list per class, so the data path neither
 *   allocates from the system nor takes a lock.  When the arena is exhausted a
 *   buffer comes from jemalloc (mallocx with MALLOCX_ALIGN; posix_memalign in
 *   sanitizer builds, which cannot run jemalloc beside their own allocator);
 *   such buffers work, only without the fixed-buffer fast path.
 *
 * Invariants
 *   P1  Every buffer is aligned to 4096 bytes and at least as long as asked.
 *   P2  A buffer is returned to the pool it came from (io_pool_put checks
 *       the arena range to tell arena buffers from fallback ones).
 *
 * Context
 *   Owner thread only (no locking).  Cross-thread frees are a bug.
 */
#ifndef PITCOPY_IO_POOL_H
#define PITCOPY_IO_POOL_H

#include <stddef.h>
#include <stdbool.h>

#define IO_POOL_MIN_BUF  4096u
#define IO_POOL_MAX_BUF  (32u << 20)

struct io_pool;

/*
 * arena_bytes: size of the registered arena (rounded up to 2 MiB); 0 for
 * none (every buffer from jemalloc).  Returns 0 or -errno.
 */
int   io_pool_create(size_t arena_bytes, struct io_pool **out);
void  io_pool_destroy(struct io_pool *p);

/* The arena, for io_loop_add_buffers().  *len is 0 when there is none. */
void *io_pool_arena(const struct io_pool *p, size_t *len);

/* A buffer of at least len bytes (len ≤ IO_POOL_MAX_BUF), or NULL when out of memory. */
void *io_pool_get(struct io_pool *p, size_t len);
void  io_pool_put(struct io_pool *p, void *buf, size_t len);

/* Plain aligned allocation outside any pool (control path). */
void *io_alloc_aligned(size_t len);
void  io_free_aligned(void *buf, size_t len);

#endif
