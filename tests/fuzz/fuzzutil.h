/* SPDX-License-Identifier: MIT */
/*
 * tests/fuzz/fuzzutil.h — what the libFuzzer harnesses share: a private
 * directory on tmpfs, and the client's side of a connection played from a
 * fuzz input.
 *
 * Context
 *   The harness's thread.  Failures of the environment (no tmpfs, no
 *   socketpair) abort: they are not findings, and a harness that silently
 *   runs nothing would report a clean run.
 */
#ifndef PITCOPY_FUZZUTIL_H
#define PITCOPY_FUZZUTIL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A fresh directory under /dev/shm (or $TMPDIR), removed at exit. */
const char *fz_sandbox(const char *tag);
/* rm -rf of what dir holds, keeping dir. */
void fz_empty_dir(const char *dir);

/*
 * The client: a thread that sends data on fd (then shuts its sending side,
 * as a client that is done) while it reads and drops everything the server
 * says, until the server closes.  Reading as it writes is what keeps a
 * server whose replies fill the socket from waiting on a client that is
 * waiting on it.
 */
struct fz_client {
    pthread_t       th;
    int             fd;
    const uint8_t  *data;
    size_t          size;
    size_t          mark;   /* sends stop here once, so fz_client_wait_sent(mark) is exact */
    bool            show;   /* $FUZZ_SHOW_REPLIES: copy what the server says to stderr */
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    size_t          sent;   /* lock: bytes of data sent so far */
    bool            done;   /* lock: sending is over (all sent, or the server stopped reading) */
};

/* Start the client on fd (ours: closed by fz_client_join); mark: see above
 * (size or more: none). */
void fz_client_start(struct fz_client *c, int fd, const uint8_t *data, size_t size,
                     size_t mark);
/* Wait until at least n bytes were sent, or sending is over. */
void fz_client_wait_sent(struct fz_client *c, size_t n);
void fz_client_join(struct fz_client *c);

#endif
