/* SPDX-License-Identifier: MIT */
/*
 * engine/meta.c — persistent split bitmaps: superblock, journal, pages, and
 * the committer thread that makes bits durable in groups.
 *
 * Role
 *   A mapping opened with a metadata file (pc_map_opts.meta_path) keeps its
 *   state and split bitmap there (format: meta.h), so a restart recovers
 *   every mapping as it was, progress included.  The data path never
 *   writes metadata itself: it hands a grain operation whose data is
 *   written to meta_commit(), and the committer thread makes it durable —
 *   one fdatasync of the file the round's data went to (copies and a
 *   client's whole-grain target writes alike; none when the data was
 *   there all along), then one journal block per mapping, fdatasync of the
 *   metadata file — and only then sets the bits in
 *   memory and resumes the operation on its worker.  Many operations share
 *   one round (group commit).  This metadata is kept apart from the I/O
 *   path the way dm-clone keeps its own: the workers never wait on it.
 *
 * The rule (DESIGN.md, "Durability and crash consistency")
 *   D1  A bit is set in memory only once the data it vouches for and the
 *       journal block that records it are durable.  So every bit a reader,
 *       a source write's fast path (cow.c I2) or a checkpoint can see is
 *       already durable, and a source write — which waits for its
 *       copy-on-write's bit — reaches the disk only after the old contents
 *       and the bit saying where they went.
 *   D2  A start makes the new generation durable (superblock) before the
 *       chain changes; journal blocks and pages of other generations are
 *       ignored, which is how a start clears the bits on disk without
 *       writing them.
 *   D3  Journal blocks are written one per mapping per round, each only
 *       after the previous round's fdatasync: so on recovery a valid block
 *       after a missing one means corruption, not a crash.
 *   D4  A checkpoint writes every page dirtied since the last one to the
 *       slot not holding its newest valid copy, syncs, and only then moves
 *       the superblock's ckpt_seq past the journal it replaces.  A crash
 *       in between leaves the old slot and the journal: nothing is lost.
 *       The journal is checkpointed before the ring would overwrite a
 *       block at or after ckpt_seq.
 *   D5  With durability none nothing is journalled; only an orderly
 *       shutdown (meta_close with clean) writes the pages and the CLEAN
 *       flag, and any other write of the superblock clears it.  Recovery
 *       trusts such a file only when CLEAN is set.
 *   D6  Incremental mappings: a difference bit is journalled like a split
 *       bit (its own extent kind, meta.h) and set in memory only once
 *       durable, and a write waits for its grains' difference bits (cow.c
 *       I6): so every write that reached the disk is in the difference
 *       bitmap a recovery rebuilds.  A start switches recording to the
 *       other region under a new generation (D2), and with an incremental
 *       start the split bitmap is ~(the region just closed): the journal
 *       is no longer discarded at a start, because the closed region's last
 *       changes (those made after the superblock write and before the
 *       start's hold) may still be only there.  DIFF_VALID is set only by
 *       a start and cleared by anything that makes the recording
 *       incomplete; with durability none it counts only with CLEAN (D5),
 *       so a crash makes the next start copy everything, never guess.
 *
 * Locking
 *   meta->lock guards the superblock image, the journal position, the page
 *   slots and the dirty set.  Taken by the committer and by control calls
 *   (state changes); never by workers.  Never held across a wait for
 *   anything but the metadata file's own I/O.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "engine/internal.h"
#include "engine/meta.h"
#include "io/fault.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "metadata is little-endian");

struct meta {
    struct pc_map  *m;
    int             fd;
    char            path[PATH_MAX];
    bool            strict;
    pthread_mutex_t lock;
    struct meta_sb  sb;            /* as last written */
    struct meta_sb  sb_prev;       /* before the last meta_start (meta_start_abort) */
    uint32_t        version;       /* of the file: 1 until meta_recovered_commit upgrades it */
    uint64_t        next_seq;      /* the next journal block */
    uint64_t        npages;        /* per region */
    /* Per region (meta.h): slot of each page's newest copy (2 = none yet),
     * pages dirtied since the last checkpoint. */
    uint8_t        *page_slot[META_REGIONS];
    uint64_t       *dirty[META_REGIONS];
    bool            any_dirty;
    void           *block;         /* one aligned block for I/O (lock) */
};

/* The in-memory bitmap of region r (NULL: the mapping records no changes). */
static struct bitmap *region_bits(const struct meta *md, unsigned r)
{
    return r == 0 ? md->m->bits : atomic_load(&md->m->diff[r - 1]);
}

static uint64_t region_gen(const struct meta_sb *sb, unsigned r)
{
    return r == 0 ? sb->gen : sb->diff_gen[r - 1];
}

/* ------------------------------------------------------------------------
 * Blocks. */

static uint64_t block_sum(const void *blk, size_t sum_off)
{
    /* xxh64 of the block with the checksum field taken as zero. */
    XXH64_state_t *s = XXH64_createState();
    static const uint64_t zero;
    XXH64_reset(s, 0);
    XXH64_update(s, blk, sum_off);
    XXH64_update(s, &zero, sizeof zero);
    XXH64_update(s, (const char *)blk + sum_off + 8, META_BLOCK - sum_off - 8);
    uint64_t h = XXH64_digest(s);
    XXH64_freeState(s);
    return h;
}

#define SB_SUM_OFF   __builtin_offsetof(struct meta_sb, checksum)
#define JB_SUM_OFF   __builtin_offsetof(struct meta_jblock, checksum)
#define PG_SUM_OFF   __builtin_offsetof(struct meta_page, checksum)

static int write_block(struct meta *md, uint64_t blockno, const void *blk)
{
    off_t off = (off_t)(blockno * META_BLOCK);
    int r = io_fault_check(md->fd, IO_OP_WRITE, (uint64_t)off, META_BLOCK);
    if (r < 0)
        return r;
    ssize_t n = pwrite(md->fd, blk, META_BLOCK, off);
    r = n == (ssize_t)META_BLOCK ? 0 : n < 0 ? -errno : -EIO;
    io_fault_done(md->fd, IO_OP_WRITE, false, (uint64_t)off, META_BLOCK, r);
    return r;
}

static int read_block(int fd, uint64_t blockno, void *blk)
{
    uint64_t off = blockno * META_BLOCK;
    int r = io_fault_check(fd, IO_OP_READ, off, META_BLOCK);
    if (r < 0)
        return r;
    ssize_t n = pread(fd, blk, META_BLOCK, (off_t)off);
    if (n >= 0 && n < (ssize_t)META_BLOCK)      /* past the end: reads as never written */
        memset((char *)blk + n, 0, META_BLOCK - (size_t)n);
    r = n < 0 ? -errno : 0;
    io_fault_done(fd, IO_OP_READ, false, off, META_BLOCK, r);
    return r;
}

static int sync_fd(int fd)
{
    int r = io_fault_check(fd, IO_OP_FDATASYNC, 0, 0);
    if (r < 0)
        return r;
    r = fdatasync(fd) < 0 ? -errno : 0;
    io_fault_done(fd, IO_OP_FDATASYNC, false, 0, 0, r);
    return r;
}

static bool all_zero(const void *p, size_t n)
{
    const uint64_t *w = p;
    for (size_t i = 0; i < n / 8; i++)
        if (w[i])
            return false;
    return true;
}

/* ------------------------------------------------------------------------
 * Superblock. */

/* Persisted state: preparing and prepared change nothing on disk until the
 * start (whose superblock comes first, D2), so they are recorded as the
 * state they came from, which a restart can return to. */
static uint32_t persisted_state(const struct pc_map *m)
{
    int s = map_state(m);
    bool whole = atomic_load(&m->complete);
    /* A failure is recorded before its state change (map_fail). */
    if (map_failed(m) && (s == PC_MAP_COPYING || s == PC_MAP_SUSPENDED ||
                          s == PC_MAP_PREPARING || s == PC_MAP_PREPARED ||
                          (s == PC_MAP_IDLE_OR_COPIED && atomic_load(&m->in_chain))))
        return PC_MAP_SUSPENDED;
    if (s == PC_MAP_PREPARING || s == PC_MAP_PREPARED)
        return whole ? PC_MAP_IDLE_OR_COPIED : PC_MAP_STOPPED;
    return (uint32_t)s;
}

static void sb_fill_locked(struct meta *md)
{
    struct pc_map *m = md->m;
    struct meta_sb *sb = &md->sb;
    sb->state = persisted_state(m);
    sb->flags &= ~(META_F_COMPLETE | META_F_IN_CHAIN | META_F_CLEAN | META_F_RESTORING);
    if (atomic_load(&m->complete))
        sb->flags |= META_F_COMPLETE;
    if (atomic_load(&m->restoring))
        sb->flags |= META_F_RESTORING;
    else if (atomic_load(&m->in_chain) || map_state(m) == PC_MAP_COPYING ||
             map_state(m) == PC_MAP_STOPPING)
        sb->flags |= META_F_IN_CHAIN;
    sb->copy_rate = atomic_load(&m->copy_rate);
    sb->clean_rate = atomic_load(&m->clean_rate);
    sb->start_hold_ns = m->start_hold_ns;
    sb->start_realtime_ns = m->start_realtime_ns;
    sb->start_seq = m->start_seq;
    memset(sb->reason, 0, sizeof sb->reason);
    /* DIFF_VALID is the start's to set (meta_start); a recording that became
     * incomplete since (an incomplete stop) clears it. */
    if (!atomic_load(&m->diff_valid))
        sb->flags &= ~META_F_DIFF_VALID;
    /* The reason it was given (map_failed_job, or a recovery) outlives the
     * restart after it: a recovered mapping's fail_err is only a stand-in. */
    if (map_failed(m) && m->invalid[0])
        snprintf(sb->reason, sizeof sb->reason, "%.*s", (int)sizeof sb->reason - 1, m->invalid);
    else if (map_failed(m))
        snprintf(sb->reason, sizeof sb->reason, "suspended: a write to target %s or to its "
                 "metadata failed: %s", m->tgt->name, strerror(-atomic_load(&m->fail_err)));
}

static int sb_write_locked(struct meta *md)
{
    md->sb.seq++;
    md->sb.checksum = 0;
    memset(md->block, 0, META_BLOCK);
    memcpy(md->block, &md->sb, sizeof md->sb);
    ((struct meta_sb *)md->block)->checksum = block_sum(md->block, SB_SUM_OFF);
    int r = write_block(md, md->sb.seq & 1, md->block);
    if (!r)
        r = sync_fd(md->fd);
    return r;
}

static bool sb_valid(const struct meta_sb *sb, const void *blk)
{
    return sb->magic == META_SB_MAGIC && (sb->version == 1 || sb->version == META_VERSION) &&
           sb->block_size == META_BLOCK && sb->checksum == block_sum(blk, SB_SUM_OFF);
}

/* ------------------------------------------------------------------------
 * Pages and checkpoints. */

static void mark_dirty_locked(struct meta *md, unsigned r, uint64_t first, uint64_t count)
{
    uint64_t p0 = first / META_PAGE_BITS, p1 = (first + count - 1) / META_PAGE_BITS;
    for (uint64_t p = p0; p <= p1; p++)
        md->dirty[r][p / 64] |= 1ull << (p % 64);
    md->any_dirty = true;
}

static uint64_t page_block(const struct meta *md, unsigned r, uint64_t p, unsigned slot)
{
    return META_PAGES_BLOCK + 2 * (r * md->npages + p) + slot;
}

/* D4.  all: every page holding a set bit, dirty or not (a clean shutdown
 * of a mapping whose bits were never journalled, D5). */
static int checkpoint_locked(struct meta *md, bool all)
{
    struct pc_map *m = md->m;
    struct meta_page *pg = md->block;
    uint64_t epoch = md->sb.ckpt_epoch + 1;
    int r = 0;

    unsigned nreg = md->version >= 2 ? META_REGIONS : 1;
    for (unsigned rg = 0; all && rg < nreg; rg++) {
        struct bitmap *bm = region_bits(md, rg);
        for (uint64_t g = bm ? bitmap_find_next_set(bm, 0) : m->grains; g < m->grains;
             g = bitmap_find_next_set(bm, (g / META_PAGE_BITS + 1) * META_PAGE_BITS))
            mark_dirty_locked(md, rg, g, 1);
    }
    for (unsigned rg = 0; rg < nreg && !r; rg++) {
        struct bitmap *bm = region_bits(md, rg);
        for (uint64_t p = 0; bm && md->any_dirty && p < md->npages && !r; p++) {
            if (!(md->dirty[rg][p / 64] & (1ull << (p % 64))))
                continue;
            memset(pg, 0, sizeof *pg);
            pg->magic = META_PAGE_MAGIC;
            pg->gen = region_gen(&md->sb, rg);
            pg->epoch = epoch;
            pg->index = p;
            pg->region = rg;
            bitmap_get_words(bm, p * META_PAGE_WORDS, META_PAGE_WORDS, pg->words);
            pg->checksum = block_sum(pg, PG_SUM_OFF);
            unsigned slot = md->page_slot[rg][p] == 0 ? 1 : 0;
            r = write_block(md, page_block(md, rg, p, slot), pg);
        }
    }
    if (!r)
        r = sync_fd(md->fd);
    if (r)
        return r;
    for (unsigned rg = 0; rg < nreg; rg++) {
        bool have = region_bits(md, rg) != NULL;
        for (uint64_t p = 0; have && md->any_dirty && p < md->npages; p++)
            if (md->dirty[rg][p / 64] & (1ull << (p % 64)))
                md->page_slot[rg][p] = md->page_slot[rg][p] == 0 ? 1 : 0;
        memset(md->dirty[rg], 0, ((md->npages + 63) / 64) * 8);
    }
    md->any_dirty = false;
    md->sb.ckpt_epoch = epoch;
    md->sb.ckpt_seq = md->next_seq;
    return sb_write_locked(md);
}

/* ------------------------------------------------------------------------
 * Create, open, close. */

static struct meta *meta_alloc(struct pc_map *m, const char *path, bool strict)
{
    struct meta *md = calloc(1, sizeof *md);
    if (!md)
        return NULL;
    md->m = m;
    md->fd = -1;
    md->strict = strict;
    snprintf(md->path, sizeof md->path, "%s", path);
    md->version = META_VERSION;
    md->npages = (m->grains + META_PAGE_BITS - 1) / META_PAGE_BITS;
    bool ok = true;
    for (unsigned r = 0; r < META_REGIONS; r++) {
        md->page_slot[r] = malloc(md->npages ? md->npages : 1);
        md->dirty[r] = calloc((md->npages + 63) / 64 + 1, 8);
        ok = ok && md->page_slot[r] && md->dirty[r];
        if (md->page_slot[r])
            memset(md->page_slot[r], 2, md->npages ? md->npages : 1);
    }
    md->block = pc_buf_alloc_any(META_BLOCK);
    if (!ok || !md->block) {
        for (unsigned r = 0; r < META_REGIONS; r++) {
            free(md->page_slot[r]);
            free(md->dirty[r]);
        }
        if (md->block)
            pc_buf_free_any(md->block, META_BLOCK);
        free(md);
        return NULL;
    }
    pthread_mutex_init(&md->lock, NULL);
    return md;
}

/* Every block the file can hold (meta.h): its length from meta_create on. */
static off_t meta_file_size(const struct meta *md)
{
    unsigned nreg = md->version >= 2 ? META_REGIONS : 1;
    return (off_t)(META_PAGES_BLOCK + 2 * md->npages * nreg) * META_BLOCK;
}

static void meta_free(struct meta *md)
{
    if (md->fd >= 0)
        close(md->fd);
    pthread_mutex_destroy(&md->lock);
    for (unsigned r = 0; r < META_REGIONS; r++) {
        free(md->page_slot[r]);
        free(md->dirty[r]);
    }
    pc_buf_free_any(md->block, META_BLOCK);
    free(md);
}

static int sync_dir_of(const char *path)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = 0;
    else if (slash)
        *slash = 0;
    else
        snprintf(dir, sizeof dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return r;
}

int meta_create(struct pc_map *m, const char *path, bool strict, struct pc_error *err)
{
    struct meta *md = meta_alloc(m, path, strict);
    int r;
    if (!md) {
        pc_error_set(err, -ENOMEM, "out of memory for the metadata of mapping %s", m->name);
        return -ENOMEM;
    }
    md->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (md->fd < 0) {
        r = -errno;
        pc_error_set(err, r, "cannot create metadata file %s for mapping %s: %s",
                     path, m->name, strerror(-r));
        meta_free(md);
        return r;
    }
    struct meta_sb *sb = &md->sb;
    sb->magic = META_SB_MAGIC;
    sb->version = META_VERSION;
    sb->block_size = META_BLOCK;
    if (getrandom(sb->map_uuid, sizeof sb->map_uuid, 0) != sizeof sb->map_uuid)
        memset(sb->map_uuid, 0x5a, sizeof sb->map_uuid);
    snprintf(sb->map_name, sizeof sb->map_name, "%s", m->name);
    snprintf(sb->src_name, sizeof sb->src_name, "%s", m->src->name);
    snprintf(sb->tgt_name, sizeof sb->tgt_name, "%s", m->tgt->name);
    sb->src_size = m->src->size;
    sb->tgt_size = m->tgt->size;
    sb->grains = m->grains;
    sb->grain_shift = m->grain_shift;
    sb->journal_blocks = META_JOURNAL_BLOCKS;
    sb->flags = strict ? META_F_STRICT : 0;
    sb->ckpt_seq = md->next_seq = 1;
    pthread_mutex_lock(&md->lock);
    sb_fill_locked(md);
    /* Full length first: a file shorter than this is truncated (meta_recover). */
    r = ftruncate(md->fd, meta_file_size(md)) < 0 ? -errno : 0;
    if (!r)
        r = sb_write_locked(md);        /* seq 1: slot 1 */
    if (!r)
        r = sb_write_locked(md);        /* seq 2: slot 0, so both slots are ours */
    pthread_mutex_unlock(&md->lock);
    if (!r)
        r = sync_dir_of(path);
    if (r) {
        pc_error_set(err, r, "cannot write metadata file %s for mapping %s: %s",
                     path, m->name, strerror(-r));
        meta_free(md);
        unlink(path);
        return r;
    }
    m->meta = md;
    return 0;
}

/* Recovery of region rg's pages (meta.h): the newest valid copy of each,
 * if of the region's generation, into its bitmap. */
static int load_region(struct meta *md, unsigned rg, const struct meta_sb *best,
                       char *why, size_t whylen)
{
    struct pc_map *m = md->m;
    struct bitmap *bm = region_bits(md, rg);
    uint64_t gen = region_gen(best, rg);
    int r;

    for (uint64_t p = 0; p < md->npages; p++) {
        struct meta_page pgs[2];
        int newest = -1;
        bool torn = false;
        for (unsigned s = 0; s < 2; s++) {
            if ((r = read_block(md->fd, page_block(md, rg, p, s), &pgs[s])) < 0) {
                snprintf(why, whylen, "cannot read %s: %s", md->path, strerror(-r));
                return r;
            }
            if (all_zero(&pgs[s], META_BLOCK))
                continue;
            if (pgs[s].magic != META_PAGE_MAGIC || pgs[s].index != p || pgs[s].region != rg ||
                pgs[s].checksum != block_sum(&pgs[s], PG_SUM_OFF)) {
                /* Torn by a checkpoint that did not finish (D4) is harmless:
                 * the journal still holds its bits.  Anything else is damage. */
                if (!(pgs[s].magic == META_PAGE_MAGIC && pgs[s].index == p &&
                      pgs[s].epoch > best->ckpt_epoch))
                    torn = true;
                continue;
            }
            if (newest < 0 || pgs[s].gen > pgs[newest].gen ||
                (pgs[s].gen == pgs[newest].gen && pgs[s].epoch > pgs[newest].epoch))
                newest = (int)s;
        }
        if (torn && (newest < 0 || pgs[newest].gen != gen || pgs[newest].epoch < best->ckpt_epoch)) {
            snprintf(why, whylen, "%s page %llu (grains %llu-%llu) is corrupt in %s",
                     rg ? "difference bitmap" : "bitmap", (unsigned long long)p,
                     (unsigned long long)(p * META_PAGE_BITS),
                     (unsigned long long)((p + 1) * META_PAGE_BITS - 1), md->path);
            return -EUCLEAN;
        }
        if (newest < 0)
            continue;
        md->page_slot[rg][p] = (uint8_t)newest;
        if (pgs[newest].gen != gen || !bm)
            continue;
        const uint64_t *w = pgs[newest].words;
        for (unsigned i = 0; i < META_PAGE_WORDS; i++) {
            for (uint64_t bits = w[i]; bits;) {
                unsigned b = (unsigned)__builtin_ctzll(bits);
                unsigned e = b;
                while (e < 64 && (bits >> e & 1))
                    e++;
                uint64_t first = (p * META_PAGE_WORDS + i) * 64 + b;
                if (first < m->grains &&
                    bitmap_set_range(bm, first,
                                     (first + (e - b) > m->grains ? m->grains - first : e - b)) < 0) {
                    snprintf(why, whylen, "out of memory rebuilding the bitmap");
                    return -ENOMEM;
                }
                bits &= e == 64 ? 0 : ~0ull << e;
            }
        }
    }
    return 0;
}

/* Recovery: see meta.h and D1–D5.  Fills m's bits and out; on failure why
 * names what is wrong, and m is left without metadata. */
int meta_recover(struct pc_map *m, const char *path, bool strict, struct meta_recovered *out,
                 char *why, size_t whylen)
{
    struct meta *md = meta_alloc(m, path, strict);
    struct meta_sb best = { 0 };
    bool have = false;
    int r;

    out->state = PC_MAP_IDLE_OR_COPIED;
    if (!md) {
        snprintf(why, whylen, "out of memory");
        return -ENOMEM;
    }
    md->fd = open(path, O_RDWR | O_CLOEXEC);
    if (md->fd < 0) {
        r = -errno;
        snprintf(why, whylen, "cannot open %s: %s", path, strerror(-r));
        goto fail;
    }
    /* Superblock: the valid slot with the higher seq. */
    for (unsigned s = 0; s < 2; s++) {
        if ((r = read_block(md->fd, s, md->block)) < 0) {
            snprintf(why, whylen, "cannot read %s: %s", path, strerror(-r));
            goto fail;
        }
        struct meta_sb *sb = md->block;
        if (sb->magic == META_SB_MAGIC && sb->version > META_VERSION &&
            sb->checksum == block_sum(md->block, SB_SUM_OFF)) {
            r = -EPROTONOSUPPORT;
            snprintf(why, whylen, "%s is metadata format version %u; this pitcopy reads "
                     "versions 1 to %u (upgrade pitcopy)", path, sb->version, META_VERSION);
            goto fail;
        }
        if (sb_valid(sb, md->block) && (!have || sb->seq > best.seq)) {
            best = *sb;
            have = true;
        }
    }
    r = -EUCLEAN;
    if (!have) {
        snprintf(why, whylen, "%s: neither superblock slot is valid (bad magic or checksum)", path);
        goto fail;
    }
    if (strcmp(best.map_name, m->name) || strcmp(best.src_name, m->src->name) ||
        strcmp(best.tgt_name, m->tgt->name) || best.src_size != m->src->size ||
        best.tgt_size != m->tgt->size || best.grain_shift != m->grain_shift ||
        best.grains != m->grains || best.journal_blocks != META_JOURNAL_BLOCKS) {
        snprintf(why, whylen, "%s belongs to mapping %s (%s -> %s, %llu bytes, %u KiB grains), "
                 "not to this one", path, best.map_name, best.src_name, best.tgt_name,
                 (unsigned long long)best.src_size, (1u << best.grain_shift) >> 10);
        goto fail;
    }
    md->sb = best;
    md->version = best.version;
    /* Blocks cut off a truncated file would read as never written
     * (read_block), and the bits they held would silently be gone. */
    struct stat st;
    if (fstat(md->fd, &st) < 0) {
        r = -errno;
        snprintf(why, whylen, "cannot stat %s: %s", path, strerror(-r));
        goto fail;
    }
    if (st.st_size < meta_file_size(md)) {
        snprintf(why, whylen, "%s is truncated: %lld bytes, not %lld", path,
                 (long long)st.st_size, (long long)meta_file_size(md));
        goto fail;
    }
    /* D5: without a journal only an orderly shutdown's pages can be trusted. */
    bool needs_bits = (best.flags & META_F_IN_CHAIN) || best.state == PC_MAP_COPYING ||
                      best.state == PC_MAP_STOPPING;
    if (!(best.flags & META_F_STRICT) && !(best.flags & META_F_CLEAN) && needs_bits) {
        snprintf(why, whylen, "durability was none and the daemon did not shut down cleanly: "
                 "the split bitmap was not persisted");
        goto fail;
    }

    /* Pages: the newest valid copy of each, if of its region's generation. */
    unsigned nreg = md->version >= 2 ? META_REGIONS : 1;
    for (unsigned rg = 0; rg < nreg; rg++) {
        r = load_region(md, rg, &best, why, whylen);
        if (r < 0)
            goto fail;
    }

    /* Journal: blocks ckpt_seq, ckpt_seq+1, … in order (D3).  Split extents
     * count in blocks of this generation, difference extents in blocks not
     * older than their region (meta.h); older seqs are ignored. */
    uint64_t max_seq = best.ckpt_seq ? best.ckpt_seq - 1 : 0, want = best.ckpt_seq;
    uint64_t stray = 0;
    struct meta_jblock *jb = malloc(sizeof *jb * META_JOURNAL_BLOCKS);
    if (!jb) {
        r = -ENOMEM;
        snprintf(why, whylen, "out of memory reading the journal");
        goto fail;
    }
    bool valid[META_JOURNAL_BLOCKS];
    for (unsigned i = 0; i < META_JOURNAL_BLOCKS; i++) {
        char blk[META_BLOCK] __attribute__((aligned(8)));
        if ((r = read_block(md->fd, META_JOURNAL_BLOCK + i, blk)) < 0) {
            free(jb);
            snprintf(why, whylen, "cannot read %s: %s", path, strerror(-r));
            goto fail;
        }
        memcpy(&jb[i], blk, sizeof jb[i]);
        valid[i] = jb[i].magic == META_JOURNAL_MAGIC && jb[i].seq % META_JOURNAL_BLOCKS == i &&
                   jb[i].nextents <= META_JOURNAL_EXTENTS &&
                   jb[i].checksum == block_sum(blk, JB_SUM_OFF);
        if (valid[i] && jb[i].seq > max_seq)
            max_seq = jb[i].seq;
    }
    for (;;) {
        unsigned i = (unsigned)(want % META_JOURNAL_BLOCKS);
        if (!valid[i] || jb[i].seq != want)
            break;
        for (uint32_t x = 0; x < jb[i].nextents; x++) {
            uint64_t f = jb[i].ext[x].first & META_EXT_GRAIN, c = jb[i].ext[x].count;
            bool diff = jb[i].ext[x].first & META_EXT_DIFF;
            unsigned rg = diff ? ((jb[i].ext[x].first & META_EXT_REGION1) ? 2 : 1) : 0;
            if (c == 0 || f >= m->grains || c > m->grains - f || (diff && md->version < 2)) {
                free(jb);
                r = -EUCLEAN;
                snprintf(why, whylen, "journal block %llu of %s lists grains past the volume's end",
                         (unsigned long long)want, path);
                goto fail;
            }
            struct bitmap *bm = region_bits(md, rg);
            if (!bm || (rg == 0 ? jb[i].gen != best.gen : jb[i].gen < region_gen(&best, rg)))
                continue;
            if (bitmap_set_range(bm, f, c) < 0) {
                free(jb);
                r = -ENOMEM;
                snprintf(why, whylen, "out of memory rebuilding the bitmap");
                goto fail;
            }
            mark_dirty_locked(md, rg, f, c);
        }
        want++;
    }
    for (unsigned i = 0; i < META_JOURNAL_BLOCKS; i++)
        if (valid[i] && jb[i].gen == best.gen && jb[i].seq > want)
            stray = jb[i].seq;
    free(jb);
    if (stray) {
        r = -EUCLEAN;
        snprintf(why, whylen, "journal block %llu of %s is missing or corrupt, but block %llu "
                 "after it is valid", (unsigned long long)want, path, (unsigned long long)stray);
        goto fail;
    }
    /* D6: an incremental start's split bits are every grain the closed
     * region does not list, plus what pages and journal say. */
    if (best.flags & META_F_DIFF_BASE) {
        struct bitmap *base = region_bits(md, best.diff_cur ? 1 : 2);
        if (!base || md->version < 2) {
            r = -EUCLEAN;
            snprintf(why, whylen, "%s says the mapping restarted incrementally, but mapping %s "
                     "is not incremental", path, m->name);
            goto fail;
        }
        for (uint64_t g = bitmap_find_next_unset(base, 0); g < m->grains;) {
            uint64_t h = bitmap_find_next_set(base, g);
            if (bitmap_set_range(m->bits, g, h - g) < 0) {
                r = -ENOMEM;
                snprintf(why, whylen, "out of memory rebuilding the bitmap");
                goto fail;
            }
            g = h < m->grains ? bitmap_find_next_unset(base, h) : h;
        }
    }
    md->next_seq = max_seq + 1 > want ? max_seq + 1 : want;

    if (out->state != PC_MAP_SUSPENDED)
        out->state = (enum pc_map_state)best.state;
    out->complete = best.flags & META_F_COMPLETE;
    out->in_chain = best.flags & META_F_IN_CHAIN;
    out->restoring = best.flags & META_F_RESTORING;
    out->clean = best.flags & META_F_CLEAN;
    out->gen = best.gen;
    out->start_seq = best.start_seq;
    out->start_realtime_ns = best.start_realtime_ns;
    out->start_hold_ns = best.start_hold_ns;
    out->copy_rate = best.copy_rate;
    out->clean_rate = best.clean_rate;
    out->replayed = want - best.ckpt_seq;
    /* D6, D5: a recording is trusted only if journalled or shut down cleanly. */
    out->diff_cur = best.diff_cur ? 1 : 0;
    out->diff_base = best.flags & META_F_DIFF_BASE;
    out->diff_valid = md->version >= 2 && (best.flags & META_F_DIFF_VALID) &&
                      (best.flags & (META_F_STRICT | META_F_CLEAN)) && region_bits(md, 1);
    char mark[PATH_MAX + 16];
    snprintf(mark, sizeof mark, "%s%s", path, META_FAILED_SUFFIX);
    if (access(mark, F_OK) == 0 && !best.reason[0] &&
        (best.state == PC_MAP_COPYING || (best.flags & META_F_IN_CHAIN)) &&
        !(best.flags & META_F_RESTORING)) {
        out->state = PC_MAP_SUSPENDED;
        snprintf(best.reason, sizeof best.reason, "suspended: its metadata could not be "
                 "written (the marker %s beside it says so)", META_FAILED_SUFFIX);
    }
    snprintf(out->reason, sizeof out->reason, "%s", best.reason);
    m->meta = md;
    return 0;
fail:
    bitmap_clear_all(m->bits);
    meta_free(md);
    return r;
}

/* After recovery has set the mapping's fields: fold the journal into the
 * pages and say, durably, that the file is in use (D5: not clean). */
int meta_recovered_commit(struct pc_map *m)
{
    struct meta *md = m->meta;
    pthread_mutex_lock(&md->lock);
    /* The superblock as recovered, not refilled from m: m is not back in
     * its chain yet, and the file must keep saying it belongs there. */
    md->sb.flags &= ~(META_F_STRICT | META_F_CLEAN);
    md->sb.flags |= md->strict ? META_F_STRICT : 0;
    if (!atomic_load(&m->diff_valid))
        md->sb.flags &= ~META_F_DIFF_VALID;
    int r = 0;
    if (md->version < META_VERSION) {
        /* Upgrade in place: the difference regions follow the split pages;
         * a version 1 file has recorded no changes (DIFF_VALID clear). */
        md->version = md->sb.version = META_VERSION;
        md->sb.flags &= ~(META_F_DIFF_VALID | META_F_DIFF_BASE);
        r = ftruncate(md->fd, meta_file_size(md)) < 0 ? -errno : 0;
    }
    if (!r)
        r = checkpoint_locked(md, false);
    pthread_mutex_unlock(&md->lock);
    return r;
}

void meta_close(struct pc_map *m, bool clean)
{
    struct meta *md = m->meta;
    if (!md)
        return;
    if (clean) {
        /* D5: the data first, then the pages, then the flag. */
        int r = sync_fd(m->tgt->fd);
        pthread_mutex_lock(&md->lock);
        sb_fill_locked(md);
        if (!r)
            r = checkpoint_locked(md, !md->strict);
        if (!r) {
            md->sb.flags |= META_F_CLEAN;
            r = sb_write_locked(md);
        }
        pthread_mutex_unlock(&md->lock);
        if (r)
            pc_log("mapping %s: cannot write its metadata at shutdown (%s): %s",
                   m->name, md->path, strerror(-r));
    }
    m->meta = NULL;
    meta_free(md);
}

/* ------------------------------------------------------------------------
 * State changes (control side). */

int meta_write_state(struct pc_map *m)
{
    struct meta *md = m->meta;
    if (!md)
        return 0;
    pthread_mutex_lock(&md->lock);
    sb_fill_locked(md);
    int r = sb_write_locked(md);
    pthread_mutex_unlock(&md->lock);
    if (r)
        pc_log("mapping %s: cannot write its superblock (%s): %s",
               m->name, md->path, strerror(-r));
    return r;
}

/* D2: a new generation, durable before the chain changes.  The caller has
 * set m's start fields and will publish the chain after this returns 0. */
int meta_start(struct pc_map *m, struct pc_error *err)
{
    struct meta *md = m->meta;
    if (!md)
        return 0;
    pthread_mutex_lock(&md->lock);
    struct meta_sb saved = md->sb;
    md->sb.gen++;
    sb_fill_locked(md);
    md->sb.state = PC_MAP_COPYING;
    md->sb.flags = (md->sb.flags | (atomic_load(&m->restoring) ? META_F_RESTORING
                                    : META_F_IN_CHAIN)) & ~META_F_COMPLETE;
    memset(md->sb.reason, 0, sizeof md->sb.reason);     /* a new point in time */
    /* D6: recording moves to the other region, cleared by its new gen; the
     * region closed now stays, the base of an incremental start's bits.
     * The journal stays too: the closed region's newest bits may be there. */
    unsigned next = !atomic_load(&m->dcur);
    md->sb.diff_cur = next;
    md->sb.diff_gen[next] = md->sb.gen;
    md->sb.flags &= ~(META_F_DIFF_VALID | META_F_DIFF_BASE);
    if (m->incremental)
        md->sb.flags |= META_F_DIFF_VALID;
    if (m->incr_start)
        md->sb.flags |= META_F_DIFF_BASE;
    memset(md->dirty[0], 0, ((md->npages + 63) / 64) * 8);
    memset(md->dirty[1 + next], 0, ((md->npages + 63) / 64) * 8);
    int r = sb_write_locked(md);
    if (r) {
        uint64_t seq = md->sb.seq;
        md->sb = saved;
        md->sb.seq = seq;
    }
    md->sb_prev = saved;
    pthread_mutex_unlock(&md->lock);
    if (!r) {
        char mark[PATH_MAX + 16];
        snprintf(mark, sizeof mark, "%s%s", md->path, META_FAILED_SUFFIX);
        unlink(mark);             /* a new point in time: the old failure is moot */
    }
    if (r)
        pc_error_set(err, r, "mapping %s: cannot write its metadata (%s): %s; not started",
                     m->name, md->path, strerror(-r));
    return r;
}

void meta_start_abort(struct pc_map *m)
{
    struct meta *md = m->meta;
    if (!md)
        return;
    pthread_mutex_lock(&md->lock);
    /* The recording never moved (map.c did not switch): the disk says so
     * again before anything is journalled for the old region under the new
     * generation's number — which D6 would still count for it. */
    md->sb.diff_cur = md->sb_prev.diff_cur;
    md->sb.diff_gen[0] = md->sb_prev.diff_gen[0];
    md->sb.diff_gen[1] = md->sb_prev.diff_gen[1];
    md->sb.flags = (md->sb.flags & ~(META_F_DIFF_VALID | META_F_DIFF_BASE)) |
                   (md->sb_prev.flags & (META_F_DIFF_VALID | META_F_DIFF_BASE));
    pthread_mutex_unlock(&md->lock);
}

void meta_barrier(struct pc_map *m)
{
    if (m->meta) {
        pthread_mutex_lock(&m->meta->lock);
        pthread_mutex_unlock(&m->meta->lock);
    }
}

bool meta_strict(const struct pc_map *m)
{
    return m->meta && m->meta->strict;
}

/* ------------------------------------------------------------------------
 * The committer (D1, D3). */

struct committer {
    struct pc_engine *e;
    pthread_t        thread;
    pthread_mutex_t  lock;
    pthread_cond_t   cond;
    struct meta_req *head, *tail;
    bool             stop;
};

static void meta_queue(struct meta_req *rq);

static void req_done_msg(struct io_msg *msg)
{
    struct meta_req *rq = msg->priv;
    rq->done(rq);
}

/*
 * map_fail: say durably that the mapping is suspended before anyone acts on
 * it.  If the superblock cannot be written either, move the file aside: a
 * restart then finds no metadata and brings the mapping back stopped, its
 * target offline (ctl/state.c S4) — never copying with bits that miss the
 * writes let through since.
 */
static void fail_map(struct meta *md, struct meta_req *rq)
{
    struct pc_map *m = md->m;
    int r = 0;
    pthread_mutex_lock(&md->lock);
    if (!map_failed(m)) {
        sb_fill_locked(md);
        md->sb.state = PC_MAP_SUSPENDED;
        snprintf(md->sb.reason, sizeof md->sb.reason, "suspended: a write to target %s or "
                 "to its metadata failed: %s", m->tgt->name,
                 strerror(-atomic_load(&m->fail_err)));
        r = sb_write_locked(md);
        if (r < 0) {
            /* The superblock cannot say it: a marker beside it will (meta_recover). */
            char mark[PATH_MAX + 16];
            snprintf(mark, sizeof mark, "%s%s", md->path, META_FAILED_SUFFIX);
            int fd = open(mark, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
            r = fd < 0 ? -errno : 0;
            if (fd >= 0)
                close(fd);
            if (!r)
                r = sync_dir_of(md->path);
            pc_log("mapping %s: cannot record its suspension in %s; %s", m->name, md->path,
                   r < 0 ? "nor create a marker beside it: writes it would have to copy fail"
                         : "a marker beside it says so");
        }
        if (!r)
            map_mark_failed(m);
    }
    pthread_mutex_unlock(&md->lock);
    rq->err = r;
    engine_post(rq->w, &rq->msg, req_done_msg, rq);
}

/* One mapping's requests of this round: data, journal block, sync, bits. */
static void commit_map(struct meta *md, struct meta_req *list, struct meta_req **rest)
{
    /* Failures first: commits behind them will fail or find the mapping failed. */
    for (struct meta_req **pp = &list; *pp;) {
        struct meta_req *rq = *pp;
        if (rq->fail) {
            *pp = rq->next_in_map;
            fail_map(md, rq);
        } else {
            pp = &rq->next_in_map;
        }
    }
    if (!list)
        return;
    struct meta_jblock *jb = md->block;
    struct meta_req *taken = NULL, **tp = &taken;
    int data_fd = -1, r = 0;

    pthread_mutex_lock(&md->lock);
    memset(jb, 0, META_BLOCK);
    /* Take what fits one block (D3); the rest waits for the next round. */
    for (struct meta_req *rq = list, *next; rq; rq = next) {
        next = rq->next_in_map;
        /* One extent per run of set bits: count the runs' first bits.  All of
         * one mapping's data is on its target, so one fd at most to sync. */
        unsigned need = rq->diff ? 1 : (unsigned)__builtin_popcountll(rq->mask & ~(rq->mask << 1));
        if (jb->nextents + need > META_JOURNAL_EXTENTS ||
            (rq->data_fd >= 0 && data_fd >= 0 && rq->data_fd != data_fd)) {
            rq->next = *rest;
            *rest = rq;
            continue;
        }
        if (rq->diff) {
            jb->ext[jb->nextents].first = rq->g0 | META_EXT_DIFF |
                                          (rq->region ? META_EXT_REGION1 : 0);
            jb->ext[jb->nextents].count = rq->count;
            jb->nextents++;
        }
        for (uint32_t i = 0; !rq->diff && i < rq->ng; i++) {
            if (!(rq->mask & (1ull << i)))
                continue;
            uint32_t j = i;
            while (j < rq->ng && (rq->mask & (1ull << j)))
                j++;
            jb->ext[jb->nextents].first = rq->g0 + i;
            jb->ext[jb->nextents].count = j - i;
            jb->nextents++;
            i = j;
        }
        if (rq->data_fd >= 0)
            data_fd = rq->data_fd;
        *tp = rq;
        tp = &rq->next_in_map;
        rq->next_in_map = NULL;
    }
    /* The data the bits vouch for, first. */
    if (data_fd >= 0)
        r = sync_fd(data_fd);
    if (!r && md->next_seq - md->sb.ckpt_seq >= META_JOURNAL_BLOCKS - 1) {
        /* D4: the ring is full; the checkpoint needs the block buffer. */
        struct meta_jblock saved = *jb;
        r = checkpoint_locked(md, false);
        *jb = saved;
    }
    if (!r && jb->nextents) {
        jb->magic = META_JOURNAL_MAGIC;
        jb->seq = md->next_seq;
        jb->gen = md->sb.gen;
        jb->checksum = block_sum(jb, JB_SUM_OFF);
        r = write_block(md, META_JOURNAL_BLOCK + jb->seq % META_JOURNAL_BLOCKS, jb);
        if (!r)
            r = sync_fd(md->fd);
        if (!r)
            md->next_seq++;
    }
    if (!r) {
        for (struct meta_req *rq = taken; rq; rq = rq->next_in_map) {
            if (rq->diff) {
                int e = bitmap_set_range(rq->bits, rq->g0, rq->count);
                if (e && !rq->err)
                    rq->err = e;
                mark_dirty_locked(md, 1u + rq->region, rq->g0, rq->count);
                continue;
            }
            for (uint32_t i = 0; i < rq->ng; i++)
                if (rq->mask & (1ull << i)) {
                    int e = 0;
                    (void)bitmap_test_and_set(md->m->bits, rq->g0 + i, &e);
                    if (e && !rq->err)
                        rq->err = e;
                    mark_dirty_locked(md, 0, rq->g0 + i, 1);
                }
        }
    }
    pthread_mutex_unlock(&md->lock);
    if (r)
        pc_log("mapping %s: cannot make its split bits durable (%s): %s",
               md->m->name, md->path, strerror(-r));
    for (struct meta_req *rq = taken, *next; rq; rq = next) {
        next = rq->next_in_map;
        if (r && !rq->err)
            rq->err = r;
        engine_post(rq->w, &rq->msg, req_done_msg, rq);
    }
}

static void *committer_main(void *arg)
{
    struct committer *c = arg;      /* not e->committer: set after this starts */
    struct meta_req *rest = NULL;

    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->head && !rest && !c->stop)
            pthread_cond_wait(&c->cond, &c->lock);
        if (!c->head && !rest && c->stop)
            break;
        struct meta_req *batch = c->head;
        c->head = c->tail = NULL;
        pthread_mutex_unlock(&c->lock);

        /* Requests left from the last round go first, in their order. */
        if (rest) {
            struct meta_req *r = rest, *rev = NULL;
            while (r) {
                struct meta_req *n = r->next;
                r->next = rev;
                rev = r;
                r = n;
            }
            struct meta_req *t = rev;
            while (t->next)
                t = t->next;
            t->next = batch;
            batch = rev;
            rest = NULL;
        }
        /* Group by mapping, keeping each mapping's arrival order. */
        while (batch) {
            struct meta *md = batch->m->meta;
            struct meta_req *mine = NULL, **mp = &mine, *others = NULL, **op = &others;
            for (struct meta_req *rq = batch, *n; rq; rq = n) {
                n = rq->next;
                if (rq->m->meta == md) {
                    *mp = rq;
                    mp = &rq->next_in_map;
                } else {
                    *op = rq;
                    op = &rq->next;
                }
            }
            *mp = NULL;
            *op = NULL;
            commit_map(md, mine, &rest);
            batch = others;
        }
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

int meta_committer_start(struct pc_engine *e)
{
    struct committer *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->e = e;
    int r = -pthread_create(&c->thread, NULL, committer_main, c);
    if (r < 0) {
        free(c);
        return r;
    }
    e->committer = c;
    return 0;
}

void meta_committer_stop(struct pc_engine *e)
{
    struct committer *c = e->committer;
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stop = true;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
    pthread_join(c->thread, NULL);
    pthread_cond_destroy(&c->cond);
    pthread_mutex_destroy(&c->lock);
    free(c);
    e->committer = NULL;
}

void meta_fail(struct meta_req *rq)
{
    rq->fail = true;
    rq->diff = false;
    meta_queue(rq);
}

void meta_commit(struct meta_req *rq)
{
    rq->fail = false;
    rq->diff = false;
    rq->err = 0;
    meta_queue(rq);
}

void meta_commit_diff(struct meta_req *rq)
{
    rq->fail = false;
    rq->err = 0;
    meta_queue(rq);
}

static void meta_queue(struct meta_req *rq)
{
    struct committer *c = rq->m->e->committer;
    rq->next = NULL;
    rq->next_in_map = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->tail)
        c->tail->next = rq;
    else
        c->head = rq;
    c->tail = rq;
    pthread_cond_signal(&c->cond);
    pthread_mutex_unlock(&c->lock);
}
