/* SPDX-License-Identifier: MIT */
/*
 * engine/meta.h — a mapping's persistent metadata: the on-disk format.
 *
 * One file per mapping, in 4 KiB blocks, little-endian (the engine runs on
 * little-endian hosts only; meta.c checks at build time):
 *
 *   block 0, 1        superblock slots A and B.  A write goes to slot
 *                     (seq & 1); the valid slot with the higher seq wins,
 *                     so a torn superblock write leaves the previous one.
 *   block 2 …         the journal: META_JOURNAL_BLOCKS blocks used as a
 *                     ring, block seq at 2 + seq % META_JOURNAL_BLOCKS.
 *                     Each lists extents of grains whose split bits were set
 *                     (and made durable) in one group commit.
 *   then              bitmap pages in three regions of npages pages each:
 *                     region 0 the split bitmap, regions 1 and 2 the two
 *                     difference bitmaps of an incremental mapping (format
 *                     version 2; a version 1 file has region 0 only).  Two
 *                     slots per page: region r, page p, slot s at
 *                     META_PAGES_BLOCK + 2(r·npages + p) + s, META_PAGE_BITS
 *                     bits per page.  A checkpoint writes a dirty page to
 *                     the slot that does not hold its newest valid copy.
 *
 * Difference bitmaps (incremental mappings; meta.c D6)
 *   diff_cur names the region recording changes since the last start; its
 *   generation diff_gen[diff_cur] is that start's gen, so a start clears it
 *   without writing it.  With META_F_DIFF_BASE the split bitmap of this
 *   start is every grain but those set in the other region (what changed
 *   between the previous start and this one: a restart copies only those),
 *   plus the split bits pages and journal record.  Journal extents with
 *   META_EXT_DIFF in first are difference bits of region META_EXT_REGION;
 *   they count for region x only in blocks whose gen ≥ diff_gen[x] (older
 *   ones were recorded before the region was last cleared).
 *
 * The file is created at its full length (sparse), so one that is shorter
 * has lost blocks: recovery rejects it rather than read them as unwritten.
 *
 * Every block carries a magic, the mapping's start generation (bits exist
 * only within one start: a start clears them by bumping gen, without
 * touching the pages or the journal) and an xxh64 of the block with the
 * checksum field zero.
 */
#ifndef PITCOPY_ENGINE_META_H
#define PITCOPY_ENGINE_META_H

#include <stdint.h>

#define META_BLOCK          4096u
#define META_JOURNAL_BLOCK  2u
#define META_JOURNAL_BLOCKS 256u
#define META_PAGES_BLOCK    (META_JOURNAL_BLOCK + META_JOURNAL_BLOCKS)
#define META_PAGE_HDR       64u
#define META_PAGE_WORDS     ((META_BLOCK - META_PAGE_HDR) / 8u)     /* 504 */
#define META_PAGE_BITS      (META_PAGE_WORDS * 64u)                  /* 32,256 */

#define META_SB_MAGIC       0x3130424d43544950ull   /* "PITCMB01" */
#define META_JOURNAL_MAGIC  0x3130524a43544950ull   /* "PITCJR01" */
#define META_PAGE_MAGIC     0x3130475043544950ull   /* "PITCPG01" */
#define META_VERSION        2u   /* 1: no difference bitmaps (still read) */
#define META_REGIONS        3u   /* split, difference 0, difference 1 */
#define META_EXT_DIFF       (1ull << 63)
#define META_EXT_REGION1    (1ull << 62)
#define META_EXT_GRAIN      (META_EXT_REGION1 - 1)
#define META_FAILED_SUFFIX  ".failed"   /* marker: a suspension the file could not record */

/* Superblock flags. */
#define META_F_COMPLETE   (1u << 0)   /* every grain split: the target is a whole image */
#define META_F_IN_CHAIN   (1u << 1)   /* in its source's chain (copying, stopping, or a
                                       * copied mapping older ones still resolve through) */
#define META_F_STRICT     (1u << 2)   /* --durability=strict: bits are journalled */
#define META_F_CLEAN      (1u << 3)   /* written by an orderly shutdown, nothing since */
#define META_F_DIFF_VALID (1u << 4)   /* the difference bitmap holds every change since the
                                       * last start (recorded durably, or CLEAN) */
#define META_F_DIFF_BASE  (1u << 5)   /* split bits = ~(the other difference region) ∪ … */
#define META_F_RESTORING  (1u << 6)   /* a restore mapping whose target reads through it
                                       * (restore.c): never in a chain */

struct meta_sb {
    uint64_t magic;
    uint32_t version;
    uint32_t block_size;
    uint64_t seq;              /* write counter: slot = seq & 1 */
    uint64_t checksum;         /* xxh64 of the block, this field zero */
    uint8_t  map_uuid[16];
    char     map_name[64];
    char     src_name[64];
    char     tgt_name[64];
    uint64_t src_size, tgt_size;
    uint64_t grains;
    uint32_t grain_shift;
    uint32_t journal_blocks;
    uint32_t state;            /* enum pc_map_state, as persisted (meta.c) */
    uint32_t flags;            /* META_F_* */
    uint64_t gen;              /* start generation */
    uint64_t start_seq;        /* order among the source's started mappings */
    uint64_t start_realtime_ns;
    uint64_t start_hold_ns;
    uint64_t ckpt_seq;         /* journal blocks from this seq on are replayed */
    uint64_t ckpt_epoch;       /* checkpoints completed */
    int32_t  copy_rate, clean_rate;
    char     reason[160];      /* why the mapping is suspended, or "" */
    /* Version 2 (a version 1 superblock reads these as zero). */
    uint64_t diff_gen[2];      /* start generation each difference region belongs to */
    uint32_t diff_cur;         /* the region recording now */
    uint32_t reserved2;
};

#define META_JOURNAL_EXTENTS ((META_BLOCK - 48u) / 16u)   /* 253 */

struct meta_jblock {
    uint64_t magic;
    uint64_t seq;
    uint64_t gen;
    uint64_t checksum;
    uint32_t nextents;
    uint32_t reserved0;
    uint64_t reserved1;
    struct { uint64_t first, count; } ext[META_JOURNAL_EXTENTS];
};

struct meta_page {
    uint64_t magic;
    uint64_t gen;
    uint64_t epoch;            /* the checkpoint that wrote it */
    uint64_t checksum;
    uint64_t index;
    uint64_t region;           /* 0 split, 1 + x difference region x */
    uint64_t reserved[2];
    uint64_t words[META_PAGE_WORDS];
};

_Static_assert(sizeof(struct meta_sb) <= META_BLOCK, "superblock fits a block");
_Static_assert(sizeof(struct meta_jblock) <= META_BLOCK, "journal block fits a block");
_Static_assert(sizeof(struct meta_page) == META_BLOCK, "a page is a block");

#endif
