/* SPDX-License-Identifier: MIT */
/*
 * demo/ledger.c — the bank's ledger for `make demo`, written and read over
 * NBD with libnbd (a real client, nothing of pitcopy's own).
 *
 * A ledger is an array of 256-byte account records filling a volume.  Each
 * record carries its account number, its balance in cents, the last batch
 * step applied to it, and an xxh64 of the rest, so a torn or stale record is
 * caught by `verify`.  The batch steps are pure functions of the account
 * number, so `verify --step N` knows every balance it must find.
 *
 *   pitcopy-ledger fill     URI                   step 0: opening balances
 *   pitcopy-ledger apply    URI --step N [--fail-at PCT]
 *   pitcopy-ledger verify   URI --step N
 *   pitcopy-ledger checksum URI|FILE              xxh64 of the whole volume
 *
 * Step 1 ("balance") adds a day's interest; step 2 ("disbursements") pays
 * out a fixed amount per account.  --fail-at stops step N part way, as a
 * batch job that crashes does, and exits 1.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libnbd.h>
#include <xxhash.h>

#define RECORD   256u
#define CHUNK    (1u << 20)          /* records move in 1 MiB requests */
#define MAGIC    "PCLEDGR1"

struct record {
    char     magic[8];
    uint64_t account;
    int64_t  balance;                /* cents */
    uint32_t step;                   /* last batch step applied */
    char     holder[32];
    uint8_t  pad[RECORD - 8 - 8 - 8 - 4 - 32 - 8];
    uint64_t sum;                    /* xxh64 of everything above */
} __attribute__((packed));
_Static_assert(sizeof(struct record) == RECORD, "record size");

static int64_t opening(uint64_t a) { return 100000 + (int64_t)((a * 7919) % 5000000); }
static int64_t after_step(uint64_t a, uint32_t step)
{
    int64_t b = opening(a);
    if (step >= 1)
        b += b / 3650;                          /* a day's interest at 10 % a year */
    if (step >= 2)
        b -= 1000 + (int64_t)(a % 97) * 10;     /* disbursements */
    return b;
}

static void record_make(struct record *r, uint64_t a, uint32_t step)
{
    memset(r, 0, sizeof *r);
    memcpy(r->magic, MAGIC, 8);
    r->account = a;
    r->balance = after_step(a, step);
    r->step = step;
    snprintf(r->holder, sizeof r->holder, "holder %" PRIu64, a);
    r->sum = XXH64(r, offsetof(struct record, sum), 0);
}

static struct nbd_handle *open_uri(const char *uri, int64_t *size)
{
    struct nbd_handle *h = nbd_create();
    if (!h || nbd_connect_uri(h, uri) == -1) {
        fprintf(stderr, "pitcopy-ledger: cannot connect to %s: %s\n", uri, nbd_get_error());
        exit(1);
    }
    *size = nbd_get_size(h);
    if (*size < (int64_t)CHUNK) {
        fprintf(stderr, "pitcopy-ledger: %s is too small for a ledger\n", uri);
        exit(1);
    }
    return h;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Write every record at `step`, or stop after fail_pct % of them. */
static int write_all(const char *uri, uint32_t step, int fail_pct)
{
    int64_t size;
    struct nbd_handle *h = open_uri(uri, &size);
    uint64_t n = (uint64_t)size / RECORD, stop_at = fail_pct >= 0 ? n * (uint64_t)fail_pct / 100 : n;
    struct record *buf = malloc(CHUNK);
    double t0 = now();

    for (uint64_t a = 0; a < n;) {
        uint64_t k = 0;
        if (a >= stop_at) {
            nbd_flush(h, 0);
            nbd_close(h);
            fprintf(stderr, "pitcopy-ledger: step %u failed at account %" PRIu64
                    " of %" PRIu64 " (simulated crash)\n", step, a, n);
            free(buf);
            return 1;
        }
        if (step > 0 && nbd_pread(h, buf, CHUNK, a * RECORD, 0) == -1)
            goto nbd_fail;
        for (; k < CHUNK / RECORD && a + k < n && a + k < stop_at; k++) {
            struct record *r = &buf[k];
            if (step > 0 && (memcmp(r->magic, MAGIC, 8) || r->step != step - 1 ||
                             r->sum != XXH64(r, offsetof(struct record, sum), 0))) {
                fprintf(stderr, "pitcopy-ledger: account %" PRIu64 " is not at step %u; "
                        "refusing to apply step %u\n", a + k, step - 1, step);
                nbd_close(h);
                free(buf);
                return 1;
            }
            record_make(r, a + k, step);
        }
        if (nbd_pwrite(h, buf, k * RECORD, a * RECORD, 0) == -1)
            goto nbd_fail;
        a += k;
    }
    if (nbd_flush(h, 0) == -1)
        goto nbd_fail;
    printf("%" PRIu64 " accounts at step %u (%.0f MiB in %.2f s)\n", n, step,
           (double)size / (1 << 20), now() - t0);
    nbd_close(h);
    free(buf);
    return 0;

nbd_fail:
    fprintf(stderr, "pitcopy-ledger: %s: %s\n", uri, nbd_get_error());
    nbd_close(h);
    free(buf);
    return 1;
}

static int verify(const char *uri, uint32_t step)
{
    int64_t size;
    struct nbd_handle *h = open_uri(uri, &size);
    uint64_t n = (uint64_t)size / RECORD;
    struct record *buf = malloc(CHUNK);
    int64_t total = 0;

    for (uint64_t a = 0; a < n; a += CHUNK / RECORD) {
        if (nbd_pread(h, buf, CHUNK, a * RECORD, 0) == -1) {
            fprintf(stderr, "pitcopy-ledger: %s: %s\n", uri, nbd_get_error());
            return 1;
        }
        for (uint64_t k = 0; k < CHUNK / RECORD && a + k < n; k++) {
            struct record *r = &buf[k];
            if (memcmp(r->magic, MAGIC, 8) || r->account != a + k ||
                r->sum != XXH64(r, offsetof(struct record, sum), 0) ||
                r->step != step || r->balance != after_step(a + k, step)) {
                fprintf(stderr, "pitcopy-ledger: account %" PRIu64 ": expected step %u balance "
                        "%" PRId64 ", found step %u balance %" PRId64 "%s\n", a + k, step,
                        after_step(a + k, step), r->step, r->balance,
                        r->sum != XXH64(r, offsetof(struct record, sum), 0) ? " (corrupt)" : "");
                nbd_close(h);
                free(buf);
                return 1;
            }
            total += r->balance;
        }
    }
    printf("%" PRIu64 " accounts verified at step %u, total %" PRId64 ".%02" PRId64 "\n",
           n, step, total / 100, total % 100);
    nbd_close(h);
    free(buf);
    return 0;
}

/* xxh64 of a whole NBD export, or of a plain file (the tape). */
static int checksum(const char *uri)
{
    uint8_t *buf = malloc(CHUNK);
    XXH64_state_t *st = XXH64_createState();
    int rc = 0;

    XXH64_reset(st, 0);
    if (strstr(uri, "://")) {
        int64_t size;
        struct nbd_handle *h = open_uri(uri, &size);
        for (int64_t off = 0; off < size && rc == 0; off += CHUNK) {
            size_t len = size - off < (int64_t)CHUNK ? (size_t)(size - off) : CHUNK;
            if (nbd_pread(h, buf, len, (uint64_t)off, 0) == -1) {
                fprintf(stderr, "pitcopy-ledger: %s: %s\n", uri, nbd_get_error());
                rc = 1;
            } else {
                XXH64_update(st, buf, len);
            }
        }
        nbd_close(h);
    } else {
        FILE *f = fopen(uri, "rb");
        size_t len;
        if (!f) {
            fprintf(stderr, "pitcopy-ledger: %s: %s\n", uri, strerror(errno));
            rc = 1;
        } else {
            while ((len = fread(buf, 1, CHUNK, f)) > 0)
                XXH64_update(st, buf, len);
            if (ferror(f)) {
                fprintf(stderr, "pitcopy-ledger: reading %s failed\n", uri);
                rc = 1;
            }
            fclose(f);
        }
    }
    if (rc == 0)
        printf("%016llx\n", (unsigned long long)XXH64_digest(st));
    XXH64_freeState(st);
    free(buf);
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: pitcopy-ledger fill URI\n"
               "       pitcopy-ledger apply URI --step N [--fail-at PCT]\n"
               "       pitcopy-ledger verify URI --step N\n"
               "       pitcopy-ledger checksum URI|FILE\n"
               "The bank ledger of `make demo`, over NBD (URI as nbdinfo takes it).\n");
}

int main(int argc, char **argv)
{
    int step = -1, fail_at = -1;
    if (argc < 3) {
        usage(stderr);
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--step") == 0 && i + 1 < argc)
            step = atoi(argv[++i]);
        else if (strcmp(argv[i], "--fail-at") == 0 && i + 1 < argc)
            fail_at = atoi(argv[++i]);
        else {
            fprintf(stderr, "pitcopy-ledger: unknown option %s\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (strcmp(argv[1], "fill") == 0)
        return write_all(argv[2], 0, -1);
    if (strcmp(argv[1], "apply") == 0 && step > 0)
        return write_all(argv[2], (uint32_t)step, fail_at);
    if (strcmp(argv[1], "verify") == 0 && step >= 0)
        return verify(argv[2], (uint32_t)step);
    if (strcmp(argv[1], "checksum") == 0)
        return checksum(argv[2]);
    usage(stderr);
    return 2;
}
