/* SPDX-License-Identifier: MIT */
/* Description: damaged or unreadable metadata files: what recovery still trusts, and what brings a mapping back stopped, invalid, its file kept as PATH.corrupt. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "engineutil.h"
#include "metautil.h"
#include "testutil.h"
#include "engine/meta.h"
#include "io/fault.h"

#define BLK   PC_BLOCK_SIZE
#define G     (64u * TU_KIB)
#define NG    64u

/*
 * Each case: a mapping with a few grains split (copy-on-write, a target
 * write), left by an orderly shutdown or by a crash (mu_snapshot: the
 * journal not yet folded into the pages), then damaged behind the engine's
 * back and recovered.  A case that must recover comes back copying with
 * every bit; one that must not comes back stopped, target offline, invalid
 * naming the damage, the file moved to PATH.corrupt and a fresh one in its
 * place — and a new start then works and survives a restart.
 */

struct ctx {
    const char    *path;        /* the mapping's metadata file */
    const char    *dir;         /* where its volumes and files are */
    struct meta_sb sb;          /* its newest valid superblock */
    unsigned       sb_slot;
};

enum outcome {
    RECOVERS,                   /* copying, every bit of this start, nothing moved aside */
    UNDONE,                     /* as before the start: idle_or_copied, nothing split */
    UNDONE_STOPPED,             /* as before the second start: stopped, the first's bits */
    INVALID,                    /* stopped, offline, invalid, PATH.corrupt */
};

/* How the mapping is left before the damage. */
enum setup {
    ORDERLY,                    /* an orderly shutdown */
    CRASH,                      /* a crash snapshot: the journal not folded */
    ORDERLY_TWICE,              /* two orderly restarts: the pages' epochs trail ckpt_epoch */
    PRIOR_CRASH,                /* a stopped earlier start's pages on disk, then a crash */
    PRIOR_JOURNAL_CRASH,        /* the same, its bits still in the journal only */
};

struct ccase {
    const char  *what;
    enum setup   setup;
    bool         big;           /* 4 KiB grains, a bitmap of two pages */
    enum pc_durability d;
    void       (*damage)(struct ctx *c);
    uint32_t     recover_grain; /* recover with another grain size (0: same) */
    enum outcome out;
    const char  *want, *want2;  /* INVALID: substrings of pc_map_info().invalid */
};

static void page_read(const char *path, uint64_t blockno, struct meta_page *pg)
{
    char blk[META_BLOCK] __attribute__((aligned(8)));
    mu_block_read(path, blockno, blk);
    memcpy(pg, blk, sizeof *pg);
}

static bool page_valid(const struct meta_page *pg, uint64_t p)
{
    return pg->magic == META_PAGE_MAGIC && pg->index == p &&
           pg->checksum == mu_block_sum(pg, offsetof(struct meta_page, checksum));
}

/* The slot holding page p's newest valid copy. */
static unsigned page_newest(const char *path, uint64_t p)
{
    struct meta_page a, b;
    page_read(path, META_PAGES_BLOCK + 2 * p, &a);
    page_read(path, META_PAGES_BLOCK + 2 * p + 1, &b);
    assert_true(page_valid(&a, p) || page_valid(&b, p));
    if (!page_valid(&b, p))
        return 0;
    if (!page_valid(&a, p))
        return 1;
    return b.gen > a.gen || (b.gen == a.gen && b.epoch > a.epoch);
}

static uint64_t journal_block(uint64_t seq)
{
    return META_JOURNAL_BLOCK + seq % META_JOURNAL_BLOCKS;
}

/* ------------------------------------------------------------------------
 * Damage. */

static void flip_sb_slot0(struct ctx *c)
{
    mu_flip(c->path, 0 * META_BLOCK + 60);
}

static void flip_sb_slot1(struct ctx *c)
{
    mu_flip(c->path, 1 * META_BLOCK + 60);
}

static void flip_sb_newest(struct ctx *c)
{
    mu_flip(c->path, c->sb_slot * META_BLOCK + 300);
}

static void flip_sb_both(struct ctx *c)
{
    mu_flip(c->path, 0 * META_BLOCK + 8);           /* version */
    mu_flip(c->path, 1 * META_BLOCK + 3000);        /* past the struct: checksummed too */
}

static void flip_page0_newest(struct ctx *c)
{
    mu_flip(c->path, (META_PAGES_BLOCK + page_newest(c->path, 0)) * META_BLOCK + 100);
}

static void flip_page1_newest(struct ctx *c)
{
    mu_flip(c->path, (META_PAGES_BLOCK + 2 + page_newest(c->path, 1)) * META_BLOCK + 4000);
}

/* What a checkpoint cut short leaves (D4): the other slot half written,
 * its header saying a checkpoint newer than the superblock's. */
static void torn_page0_unfinished(struct ctx *c)
{
    char blk[META_BLOCK] __attribute__((aligned(8)));
    unsigned newest = page_newest(c->path, 0);
    mu_block_read(c->path, META_PAGES_BLOCK + newest, blk);
    struct meta_page *pg = (struct meta_page *)blk;
    pg->epoch = c->sb.ckpt_epoch + 1;
    memset(pg->words + 200, 0xa5, 1024);            /* and the checksum left stale */
    mu_block_write(c->path, META_PAGES_BLOCK + !newest, blk);
}

/* The same bytes, but its epoch says an older checkpoint: damage. */
static void torn_page0_old(struct ctx *c)
{
    char blk[META_BLOCK] __attribute__((aligned(8)));
    unsigned newest = page_newest(c->path, 0);
    mu_block_read(c->path, META_PAGES_BLOCK + newest, blk);
    memset(((struct meta_page *)blk)->words + 200, 0xa5, 1024);
    mu_block_write(c->path, META_PAGES_BLOCK + newest, blk);
}

static void flip_journal_middle(struct ctx *c)
{
    mu_flip(c->path, journal_block(c->sb.ckpt_seq + 1) * META_BLOCK + 40);
}

static void zero_journal_middle(struct ctx *c)
{
    static const char zero[META_BLOCK];
    mu_block_write(c->path, journal_block(c->sb.ckpt_seq + 2), zero);
}

/* A well-formed journal block (valid checksum) naming grains past the end. */
static void journal_past_end(struct ctx *c)
{
    char blk[META_BLOCK] __attribute__((aligned(8)));
    uint64_t b = journal_block(c->sb.ckpt_seq + 4);
    mu_block_read(c->path, b, blk);
    struct meta_jblock *jb = (struct meta_jblock *)blk;
    assert_int_equal(jb->magic, META_JOURNAL_MAGIC);
    jb->ext[0].first = NG - 1;
    jb->ext[0].count = 2;
    jb->checksum = mu_block_sum(blk, offsetof(struct meta_jblock, checksum));
    mu_block_write(c->path, b, blk);
}

static void other_mappings_file(struct ctx *c)
{
    char other[4200];
    snprintf(other, sizeof other, "%s/other.meta", c->dir);
    assert_int_equal(rename(other, c->path), 0);
}

static void truncate_to(const char *path, off_t len)
{
    assert_int_equal(truncate(path, len), 0);
}

static void truncate_empty(struct ctx *c)
{
    truncate_to(c->path, 0);
}

static void truncate_mid_sb(struct ctx *c)
{
    truncate_to(c->path, META_BLOCK + META_BLOCK / 2);
}

static void truncate_before_pages(struct ctx *c)
{
    truncate_to(c->path, (off_t)META_PAGES_BLOCK * META_BLOCK);
}

static void truncate_mid_journal(struct ctx *c)
{
    truncate_to(c->path, (off_t)journal_block(c->sb.ckpt_seq + 2) * META_BLOCK);
}

/* Not damage but a disk that cannot read the file (io/fault.h): the
 * mapping cannot be vouched for either, and nothing of the file is lost. */
static void eio_reading(struct ctx *c, unsigned after)
{
    char rule[4300];
    snprintf(rule, sizeof rule, "%s:read:EIO:%u:1", c->path, after);
    assert_int_equal(io_fault_add(rule), 0);
}

static void eio_reading_sb(struct ctx *c)
{
    eio_reading(c, 0);
}

static void eio_reading_journal(struct ctx *c)
{
    eio_reading(c, 2 + 3);      /* both superblock slots, then journal blocks 0-2 */
}

#define S PC_DURABILITY_STRICT
#define N PC_DURABILITY_NONE
static const struct ccase cases[] = {
    { "superblock slot A (older) flipped", ORDERLY, false, S, flip_sb_slot0, 0, RECOVERS,
      NULL, NULL },
    { "superblock slot B (newest) flipped", ORDERLY, false, S, flip_sb_slot1, 0, RECOVERS,
      NULL, NULL },
    /* The newest slot is the start's own: without it the start never was. */
    { "newest superblock flipped after a crash", CRASH, false, S, flip_sb_newest, 0, UNDONE,
      NULL, NULL },
    { "both superblock slots flipped", ORDERLY, false, S, flip_sb_both, 0, INVALID,
      "neither superblock slot is valid (bad magic or checksum)", NULL },
    /* D5: the older slot does not say CLEAN. */
    { "durability none, newest superblock flipped", ORDERLY, false, N, flip_sb_newest, 0,
      INVALID, "durability was none and the daemon did not shut down cleanly", NULL },
    { "bitmap page 0 flipped", ORDERLY, false, S, flip_page0_newest, 0, INVALID,
      "bitmap page 0 (grains 0-32255) is corrupt in", NULL },
    { "bitmap page 1 flipped", ORDERLY, true, S, flip_page1_newest, 0, INVALID,
      "bitmap page 1 (grains 32256-64511) is corrupt in", NULL },
    { "durability none, bitmap page 0 flipped", ORDERLY, false, N, flip_page0_newest, 0,
      INVALID, "bitmap page 0 (grains 0-32255) is corrupt in", NULL },
    { "page torn by an unfinished checkpoint", ORDERLY_TWICE, false, S,
      torn_page0_unfinished, 0, RECOVERS, NULL, NULL },
    { "page torn, not by an unfinished checkpoint", ORDERLY_TWICE, false, S, torn_page0_old,
      0, INVALID, "bitmap page 0 (grains 0-32255) is corrupt in", NULL },
    /* D2: the earlier start's pages are not this start's bits. */
    { "pages of an earlier start", PRIOR_CRASH, false, S, NULL, 0, RECOVERS, NULL, NULL },
    /* The older superblock's generation replays its own journal blocks and
     * stops at the next start's, valid as they are. */
    { "newest superblock flipped, journal of two starts", PRIOR_JOURNAL_CRASH, false, S,
      flip_sb_newest, 0, UNDONE_STOPPED, NULL, NULL },
    { "journal block flipped in mid-replay", CRASH, false, S, flip_journal_middle, 0, INVALID,
      "is missing or corrupt, but block", "after it is valid" },
    { "journal block zeroed in mid-replay", CRASH, false, S, zero_journal_middle, 0, INVALID,
      "is missing or corrupt, but block", "after it is valid" },
    { "journal block lists grains past the end", CRASH, false, S, journal_past_end, 0,
      INVALID, "lists grains past the volume's end", NULL },
    { "another mapping's file", ORDERLY, false, S, other_mappings_file, 0, INVALID,
      "belongs to mapping other (s2 -> t2, 1048576 bytes, 64 KiB grains)", "not to this one" },
    { "recovered with another grain size", ORDERLY, false, S, NULL, 2 * G, INVALID,
      "belongs to mapping m (src -> tgt, 4194304 bytes, 64 KiB grains)", "not to this one" },
    { "truncated to nothing", ORDERLY, false, S, truncate_empty, 0, INVALID,
      "neither superblock slot is valid", NULL },
    { "truncated in superblock B", ORDERLY, false, S, truncate_mid_sb, 0, INVALID,
      "is truncated", NULL },
    { "truncated before the pages", ORDERLY, false, S, truncate_before_pages, 0, INVALID,
      "is truncated", NULL },
    { "truncated in the journal, after a crash", CRASH, false, S, truncate_mid_journal, 0,
      INVALID, "is truncated", NULL },
    { "a superblock read fails (EIO)", ORDERLY, false, S, eio_reading_sb, 0, INVALID,
      "cannot read", "Input/output error" },
    { "a journal read fails (EIO), after a crash", CRASH, false, S, eio_reading_journal, 0,
      INVALID, "cannot read", "Input/output error" },
};
#undef S
#undef N

/* ------------------------------------------------------------------------ */

static void newest_sb(const char *path, struct meta_sb *sb, unsigned *slot)
{
    char blk[META_BLOCK] __attribute__((aligned(8)));
    bool have = false;
    for (unsigned s = 0; s < 2; s++) {
        struct meta_sb x;
        mu_block_read(path, s, blk);
        memcpy(&x, blk, sizeof x);
        if (x.magic == META_SB_MAGIC &&
            x.checksum == mu_block_sum(blk, offsetof(struct meta_sb, checksum)) &&
            (!have || x.seq > sb->seq)) {
            *sb = x;
            *slot = s;
            have = true;
        }
    }
    assert_true(have);
}

static void run_case(void **state, const struct ccase *cc)
{
    struct tu_eng *f = tu_eng_get(state);
    const uint32_t grain = cc->big ? 4096 : G;
    const uint64_t grains = cc->big ? META_PAGE_BITS + 64 : NG;
    const uint64_t size = grains * grain;
    struct tu_vol *s = tu_vol_new(f, "src", size), *t = tu_vol_new(f, "tgt", size);
    struct tu_vol *s2 = tu_vol_new(f, "s2", 16 * G), *t2 = tu_vol_new(f, "t2", 16 * G);
    struct pc_error err = { 0 };
    char path[4200], aside[4300], dir[4200];

    printf("case: %s\n", cc->what);
    tu_write(f, s, 0, size);
    struct pc_map *m = mu_map(f, "m", s, t, grain, 0, cc->d);
    mu_map(f, "other", s2, t2, G, 0, PC_DURABILITY_STRICT);
    if (cc->setup == PRIOR_CRASH || cc->setup == PRIOR_JOURNAL_CRASH) {
        /* An earlier point in time: 8 grains split, then stopped. */
        tu_start(m, s, t);
        tu_write(f, s, 20ull * grain, 8ull * grain);
        assert_int_equal(pc_map_stop(m, &err), 0);
        tu_wait(m, PC_MAP_STOPPED);
    }
    if (cc->setup == PRIOR_CRASH) {
        mu_restart(f, NULL);                        /* its bits go to the pages */
        m = mu_recover(f, "m", s, t, grain, cc->d);
        assert_int_equal(tu_info(m).state, PC_MAP_STOPPED);
    }
    tu_start(m, s, t);
    for (unsigned i = 0; i < 4; i++)               /* four commits */
        tu_write(f, s, (uint64_t)(3 * i) * grain, grain);
    tu_write(f, t, 14ull * grain, grain);           /* the fifth */
    if (cc->big)
        tu_write(f, s, (META_PAGE_BITS + 5) * grain, grain);
    struct pc_map_info before = tu_info(m);
    switch (cc->setup) {
    case CRASH:
    case PRIOR_CRASH:
    case PRIOR_JOURNAL_CRASH:
        mu_snapshot(f, "crash");
        mu_restart(f, "crash");
        break;
    case ORDERLY_TWICE:
        mu_restart(f, NULL);
        mu_recover(f, "m", s, t, grain, cc->d);
        /* fall through */
    case ORDERLY:
        mu_restart(f, NULL);
        break;
    }
    mu_meta_path(t, "m", path, sizeof path);
    snprintf(aside, sizeof aside, "%s.corrupt", path);
    snprintf(dir, sizeof dir, "%s", path);
    *strrchr(dir, '/') = 0;
    struct ctx c = { .path = path, .dir = dir };
    newest_sb(path, &c.sb, &c.sb_slot);
    if (cc->damage)
        cc->damage(&c);

    m = mu_recover(f, "m", s, t, cc->recover_grain ? cc->recover_grain : grain, cc->d);
    io_fault_clear();
    pc_engine_resume(f->e);
    struct pc_map_info in = tu_info(m);
    switch (cc->out) {
    case RECOVERS:
        if (in.invalid[0] || in.state != PC_MAP_COPYING || in.grains_split != before.grains_split)
            fail_msg("%s: recovered %s, %llu of %llu grains split, invalid '%s'", cc->what,
                     pc_map_state_name(in.state), (unsigned long long)in.grains_split,
                     (unsigned long long)before.grains_split, in.invalid);
        assert_false(mu_exists(aside));
        tu_check_all(f, t);
        return;
    case UNDONE:
        if (in.invalid[0] || in.state != PC_MAP_IDLE_OR_COPIED || in.complete ||
            in.grains_split != 0 || in.start_ns != 0)
            fail_msg("%s: recovered %s, %llu grains split, start_ns %llu, invalid '%s'",
                     cc->what, pc_map_state_name(in.state),
                     (unsigned long long)in.grains_split, (unsigned long long)in.start_ns,
                     in.invalid);
        assert_false(mu_exists(aside));
        assert_true(in.target_online);              /* a plain volume */
        return;
    case UNDONE_STOPPED:
        if (in.invalid[0] || in.state != PC_MAP_STOPPED || in.grains_split != 8)
            fail_msg("%s: recovered %s, %llu grains split, invalid '%s'", cc->what,
                     pc_map_state_name(in.state), (unsigned long long)in.grains_split,
                     in.invalid);
        assert_false(mu_exists(aside));
        tu_check_offline(f, t);
        return;
    case INVALID:
        break;
    }
    if (in.state != PC_MAP_STOPPED || !strstr(in.invalid, cc->want) ||
        (cc->want2 && !strstr(in.invalid, cc->want2)))
        fail_msg("%s: recovered %s, invalid '%s'; expected stopped, '%s'", cc->what,
                 pc_map_state_name(in.state), in.invalid, cc->want);
    assert_false(in.complete);
    assert_false(in.target_online);
    tu_check_offline(f, t);
    assert_true(mu_exists(aside));
    assert_true(mu_exists(path));
    tu_check_all(f, s);

    if (cc->recover_grain)
        return;                 /* the fresh file is for the other grain size */
    /* A new point in time needs no vouching.  (The untrusted file's copy
     * rate was not taken: the mapping has the default, so stop the copy.) */
    tu_start(m, s, t);
    assert_string_equal(tu_info(m).invalid, "");
    assert_int_equal(pc_map_set_copy_rate(m, 0, &err), 0);
    tu_write(f, s, 2ull * grain, grain);
    tu_check_all(f, t);
    uint64_t split = mu_wait_stable(m);
    mu_restart(f, NULL);
    m = mu_recover(f, "m", s, t, grain, cc->d);
    in = tu_info(m);
    assert_string_equal(in.invalid, "");
    assert_int_equal(in.state, PC_MAP_COPYING);
    assert_int_equal(in.grains_split, split);
    tu_check_all(f, t);
}

/* Each row runs on both backends, as its own test with its own engine. */
struct param {
    const char        *backend;
    const struct ccase *cc;
};
static const struct ccase *current;

static int case_setup(void **state)
{
    const struct param *p = *state;
    current = p->cc;
    *state = (void *)p->backend;
    return tu_eng_setup(state);
}

static void test_corrupt(void **state)
{
    run_case(state, current);
}

int main(void)
{
    enum { N = sizeof cases / sizeof cases[0] };
    static const char *const backends[2] = { "uring", "aio" };
    static struct param params[2 * N];
    static char names[2 * N][96];
    static struct CMUnitTest tests[2 * N];

    setvbuf(stdout, NULL, _IOLBF, 0);
    for (size_t i = 0; i < 2 * N; i++) {
        params[i] = (struct param){ backends[i % 2], &cases[i / 2] };
        snprintf(names[i], sizeof names[i], "%s/%s", cases[i / 2].what, backends[i % 2]);
        tests[i] = (struct CMUnitTest){ names[i], test_corrupt, case_setup, tu_eng_teardown,
                                        &params[i] };
    }
    return _cmocka_run_group_tests("meta-corrupt", tests, 2 * N, NULL, NULL);
}
