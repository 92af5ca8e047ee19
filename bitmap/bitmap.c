/* SPDX-License-Identifier: MIT */
/*
 * bitmap/bitmap.c — lazily paged, lock-free grain bitmaps.
 *
 * Role
 *   Implements bitmap.h.  A bitmap of nbits bits is cut into pages of
 *   BITMAP_PAGE_BITS bits (4 KiB, 512 words).  Four arrays indexed by page
 *   number live in one anonymous mapping, so creation is one malloc and one
 *   mmap whatever the size, and the kernel zero-fills (and charges for) only
 *   the parts that are written:
 *
 *     dir[p]      pointer to page p's words, NULL while the page is absent
 *     cnt[p]      number of set bits in page p (see I3)
 *     full[p/64]  bit p%64: "page p is full"  — lets find_next_unset skip
 *                 64 pages (2 Mi bits) per word on a mostly-copied map
 *     present[p/64] bit p%64: "page p may have a page" — lets find_next_set,
 *                 count, clear_all and destroy skip 64 absent pages per word
 *
 *   The arrays are padded to whole OS pages so each one's resident part can
 *   be estimated from the present bits alone (bitmap_mem_bytes).
 *
 * Invariants (B1–B4 are the header's)
 *   I1  Bits at or beyond nbits are never set; so the last page's limit,
 *       page_limit(p), is the number of bits it really holds, and a search
 *       that runs into the tail clamps its result to nbits.
 *   I2  present bit p is set before dir[p] is installed (CAS).  Whoever sets a
 *       bit in page p got the page from dir[p], so once a set bit is
 *       visible so is its present bit, and find_next_set may skip a page
 *       whose present bit is clear.  A present page may still have
 *       dir[p] == NULL (the installer lost its allocation or has not CASed
 *       yet); readers treat that as all zero.
 *   I3  cnt[p] is changed only after the words: a set adds the number of bits
 *       its fetch_or really flipped, a clear subtracts the number its
 *       fetch_and really cleared.  So with no set or clear in flight in page
 *       p, cnt[p] equals the popcount of the page exactly; in flight it lags.
 *   I4  full bit p is only written by page_full_sync(), which makes it agree
 *       with cnt[p] >= page_limit(p) and re-reads cnt[p] after writing, and
 *       is called by every set or clear whose RMW on cnt[p] crossed that
 *       limit.  So when no set or clear runs in page p, full bit p is exact;
 *       while only sets run in it the bit is never set early (cnt lags the
 *       words, I3).  Only a clear racing in the same page (B2 keeps the
 *       engine from doing that) can make it briefly stale.
 *   I5  Untouched parts of the mapping are never written: clears, counts
 *       and searches touch only pages whose present bit is set, so a huge
 *       sparse bitmap stays cheap (B4).
 *
 * Ordering
 *   Page words: test_and_set/set_range/clear_range use seq_cst RMWs (header),
 *   tests and searches acquire loads.  dir[p] is published by a CAS
 *   (acq_rel) and read with acquire, pairing so the zero-filled page is seen
 *   zeroed.  cnt[p] and the full bits use seq_cst, because page_full_sync's
 *   "write the full bit, then re-read cnt" is a store→load pattern that a
 *   weaker order would let two syncs interleave wrongly.
 *
 * Context
 *   Everything may be called from any thread; nothing takes a lock.  Only the
 *   first set in a page allocates (calloc, 4 KiB); a lost install race frees
 *   its page at once.  clear_all and destroy are the exclusive-writer calls.
 *   The bitmap has no logger: it returns -ENOMEM and its caller, which
 *   knows the mapping, logs.
 */
#include "bitmap/bitmap.h"

#include <assert.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* LeakSanitizer scans the heap, stacks and globals for pointers, never an
 * anonymous mapping: pages reachable only from dir[] would be reported as
 * leaked while the bitmap lives (libFuzzer checks after every input).  So
 * the directory is registered as a root region in sanitized builds. */
#if defined(__SANITIZE_ADDRESS__)
#define BM_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BM_LSAN 1
#endif
#endif
#ifdef BM_LSAN
#include <sanitizer/lsan_interface.h>
#endif

#define PAGE_WORDS  (BITMAP_PAGE_BITS / 64u)
#define PAGE_BYTES  (BITMAP_PAGE_BITS / 8u)

/* A can't-happen condition that is still handled in release builds
 * (SQLite's NEVER()): asserts under debug, tests under NDEBUG. */
#define BM_NEVER(x) (assert(!(x)), (x))

struct bm_page {
	_Atomic uint64_t w[PAGE_WORDS];
};

struct bitmap {
	uint64_t nbits;
	uint64_t npages;          /* ceil(nbits / BITMAP_PAGE_BITS) */
	uint64_t nsum;            /* words in full[] and present[] */
	size_t   os_page;         /* kernel page size, for the resident estimate */

	void    *map;             /* the one anonymous mapping, map_len bytes */
	size_t   map_len;
	_Atomic(struct bm_page *) *dir;
	_Atomic int32_t  *cnt;    /* signed: a B2 violation makes it dip, not wrap to "full" */
	_Atomic uint64_t *full;
	_Atomic uint64_t *present;

	_Atomic uint64_t npresent; /* pages really installed (bitmap_mem_bytes) */
};

/* ---------------------------------------------------------------------- */
/* Helpers                                                                 */

static inline uint64_t word_bits_from(unsigned bit)  /* bits bit..63 */
{
	return ~0ull << bit;
}

static inline uint64_t word_bits_below(unsigned bit) /* bits 0..bit-1, bit ≤ 64 */
{
	return bit >= 64 ? ~0ull : (1ull << bit) - 1;
}

static inline uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

static inline uint64_t max_u64(uint64_t a, uint64_t b)
{
	return a > b ? a : b;
}

static size_t round_up(size_t x, size_t to)
{
	return (x + to - 1) / to * to;
}

/* Bytes of the mapping that dir[] takes (the first part). */
static size_t dir_bytes(const struct bitmap *b)
{
	return round_up(b->npages * sizeof(*b->dir), b->os_page);
}

/* Bits page p really holds (I1). */
static inline int32_t page_limit(const struct bitmap *b, uint64_t p)
{
	uint64_t first = p * BITMAP_PAGE_BITS;
	return (int32_t)min_u64(BITMAP_PAGE_BITS, b->nbits - first);
}

static inline struct bm_page *page_get(const struct bitmap *b, uint64_t p)
{
	return atomic_load_explicit(&b->dir[p], memory_order_acquire);
}

static inline bool page_full(const struct bitmap *b, uint64_t p)
{
	return atomic_load_explicit(&b->full[p / 64], memory_order_acquire) >> (p % 64) & 1;
}

/*
 * Make full bit p agree with cnt[p] (I4).  Loop until a re-read of cnt[p]
 * after our write agrees with what we wrote: a sync that read a stale count
 * then notices and writes again, so the last write to the bit is always
 * one whose following re-read saw the final count.
 */
static void page_full_sync(struct bitmap *b, uint64_t p)
{
	int32_t limit = page_limit(b, p);
	uint64_t mask = 1ull << (p % 64);
	bool full = atomic_load(&b->cnt[p]) >= limit;

	for (;;) {
		if (full)
			atomic_fetch_or(&b->full[p / 64], mask);
		else
			atomic_fetch_and(&b->full[p / 64], ~mask);
		bool now = atomic_load(&b->cnt[p]) >= limit;
		if (now == full)
			return;
		full = now;
	}
}

/* A set flipped `added` bits of page p (I3: after the words). */
static void page_count_add(struct bitmap *b, uint64_t p, int32_t added)
{
	int32_t limit = page_limit(b, p);
	int32_t old = atomic_fetch_add(&b->cnt[p], added);

	if (old < limit && old + added >= limit)
		page_full_sync(b, p);
}

/* A clear cleared `removed` bits of page p. */
static void page_count_sub(struct bitmap *b, uint64_t p, int32_t removed)
{
	int32_t limit = page_limit(b, p);
	int32_t old = atomic_fetch_sub(&b->cnt[p], removed);

	if (old >= limit && old - removed < limit)
		page_full_sync(b, p);
}

/*
 * Page p for a set: the installed one, or a fresh zeroed one we install.
 * The present bit goes first (I2); the CAS loser frees its copy (B1 keeps
 * every installed page until destroy, so no reader can hold a freed one).
 */
static int page_get_or_install(struct bitmap *b, uint64_t p, struct bm_page **out)
{
	struct bm_page *pg = page_get(b, p);
	if (pg) {
		*out = pg;
		return 0;
	}

	struct bm_page *fresh = calloc(1, sizeof *fresh);
	if (!fresh)
		return -ENOMEM;

	uint64_t pmask = 1ull << (p % 64);
	/* Load first: 64 pages share a present word, and a plain read keeps
	 * threads filling neighbouring pages from bouncing its cache line. */
	if (!(atomic_load_explicit(&b->present[p / 64], memory_order_relaxed) & pmask))
		atomic_fetch_or(&b->present[p / 64], pmask);

	struct bm_page *expected = NULL;
	if (atomic_compare_exchange_strong_explicit(&b->dir[p], &expected, fresh,
						    memory_order_acq_rel,
						    memory_order_acquire)) {
		atomic_fetch_add_explicit(&b->npresent, 1, memory_order_relaxed);
		*out = fresh;
	} else {
		free(fresh);
		*out = expected;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Lifetime                                                                */

struct bitmap *bitmap_create(uint64_t nbits, int *err)
{
	int dummy;
	if (!err)
		err = &dummy;
	struct bitmap *b = calloc(1, sizeof *b);
	if (!b) {
		*err = -ENOMEM;
		return NULL;
	}
	b->nbits = nbits;
	b->npages = nbits / BITMAP_PAGE_BITS + (nbits % BITMAP_PAGE_BITS != 0);
	b->nsum = b->npages / 64 + (b->npages % 64 != 0);
	long ps = sysconf(_SC_PAGESIZE);
	b->os_page = ps > 0 ? (size_t)ps : 4096;

	if (b->npages == 0) {
		*err = 0;
		return b;             /* nothing to map; every call sees from >= nbits */
	}

	/* Sizes fit size_t: npages < 2^49, so npages * 8 < 2^52; mmap refuses
	 * what the address space cannot hold. */
	size_t dir_len  = dir_bytes(b);
	size_t cnt_len  = round_up(b->npages * sizeof(*b->cnt), b->os_page);
	size_t sum_len  = round_up(b->nsum * sizeof(uint64_t), b->os_page);
	b->map_len = dir_len + cnt_len + 2 * sum_len;

	/* NORESERVE: the mapping is mostly never touched, don't charge it
	 * against overcommit.  No memset, no loop: the kernel's zero pages are
	 * our NULL pointers, zero counts and clear summary bits (B1). */
	b->map = mmap(NULL, b->map_len, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (b->map == MAP_FAILED) {
		free(b);
		*err = -ENOMEM;
		return NULL;
	}
	/* With THP "always", touching one directory entry could fault in 2 MiB;
	 * the whole point is that touched = 4 KiB.  Advice only: ignore errors. */
	(void)madvise(b->map, b->map_len, MADV_NOHUGEPAGE);

	char *base = b->map;
	b->dir     = (void *)base;
	b->cnt     = (void *)(base + dir_len);
	b->full    = (void *)(base + dir_len + cnt_len);
	b->present = (void *)(base + dir_len + cnt_len + sum_len);
#ifdef BM_LSAN
	__lsan_register_root_region(b->dir, dir_len);
#endif
	*err = 0;
	return b;
}

void bitmap_destroy(struct bitmap *b)
{
	if (!b)
		return;
	for (uint64_t i = 0; i < b->nsum; i++) {
		uint64_t pw = atomic_load_explicit(&b->present[i], memory_order_relaxed);
		while (pw) {
			uint64_t p = i * 64 + (unsigned)__builtin_ctzll(pw);
			pw &= pw - 1;
			free(atomic_load_explicit(&b->dir[p], memory_order_relaxed));
		}
	}
	if (b->map) {
#ifdef BM_LSAN
		__lsan_unregister_root_region(b->dir, dir_bytes(b));
#endif
		munmap(b->map, b->map_len);
	}
	free(b);
}

uint64_t bitmap_size(const struct bitmap *b)
{
	return b->nbits;
}

/* ---------------------------------------------------------------------- */
/* Single bits                                                             */

bool bitmap_test(const struct bitmap *b, uint64_t bit)
{
	if (BM_NEVER(bit >= b->nbits))
		return false;
	struct bm_page *pg = page_get(b, bit / BITMAP_PAGE_BITS);
	if (!pg)
		return false;         /* B1: absent reads as zero */
	uint64_t w = atomic_load_explicit(&pg->w[bit % BITMAP_PAGE_BITS / 64],
					  memory_order_acquire);
	return w >> (bit % 64) & 1;
}

void bitmap_get_words(const struct bitmap *b, uint64_t first_word, uint64_t n, uint64_t *out)
{
	uint64_t nwords = (b->nbits + 63) / 64;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t wi = first_word + i;
		out[i] = 0;
		if (wi >= nwords)
			continue;
		struct bm_page *pg = page_get(b, wi / PAGE_WORDS);
		if (pg)
			out[i] = atomic_load_explicit(&pg->w[wi % PAGE_WORDS], memory_order_acquire);
	}
}

bool bitmap_test_and_set(struct bitmap *b, uint64_t bit, int *err)
{
	if (BM_NEVER(bit >= b->nbits)) {
		if (err)
			*err = -EINVAL;
		return false;
	}
	uint64_t p = bit / BITMAP_PAGE_BITS;
	struct bm_page *pg;
	int r = page_get_or_install(b, p, &pg);
	if (err)
		*err = r;
	if (r)
		return false;         /* the bit stays clear */

	uint64_t mask = 1ull << (bit % 64);
	/* Single-bit fetch_or with only that bit tested: gcc emits lock bts. */
	if (atomic_fetch_or(&pg->w[bit % BITMAP_PAGE_BITS / 64], mask) & mask)
		return true;
	page_count_add(b, p, 1);    /* I3: only a real flip counts */
	return false;
}

/* ---------------------------------------------------------------------- */
/* Ranges                                                                  */

/*
 * Walk [first, first+n) page by page: the body runs once per page with p
 * the page number and [lo, hi) the in-page bit range.  Shared by set, clear
 * and count_range so the word/page edge arithmetic lives in one place.
 */
#define FOR_EACH_PAGE_RANGE(first, n, p, lo, hi)                               \
	for (uint64_t _pos = (first), _end = (first) + (n), p, lo, hi;         \
	     _pos < _end &&                                                    \
	     (p = _pos / BITMAP_PAGE_BITS, lo = _pos % BITMAP_PAGE_BITS,       \
	      hi = min_u64(BITMAP_PAGE_BITS, lo + (_end - _pos)), 1);          \
	     _pos += hi - lo)

/* Mask of word wi's bits that fall in the in-page range [lo, hi). */
static inline uint64_t range_mask(uint64_t wi, uint64_t lo, uint64_t hi)
{
	uint64_t wlo = wi * 64, whi = wlo + 64;
	uint64_t a = max_u64(lo, wlo) - wlo, z = min_u64(hi, whi) - wlo;
	return word_bits_from((unsigned)a) & word_bits_below((unsigned)z);
}

static bool range_ok(const struct bitmap *b, uint64_t first, uint64_t n)
{
	return first <= b->nbits && n <= b->nbits - first;
}

int bitmap_set_range(struct bitmap *b, uint64_t first, uint64_t n)
{
	if (BM_NEVER(!range_ok(b, first, n)))
		return -EINVAL;
	FOR_EACH_PAGE_RANGE(first, n, p, lo, hi) {
		struct bm_page *pg;
		int r = page_get_or_install(b, p, &pg);
		if (r)
			return r;     /* bits before this page stay set: sets are idempotent */
		int32_t added = 0;
		for (uint64_t wi = lo / 64; wi * 64 < hi; wi++) {
			uint64_t mask = range_mask(wi, lo, hi);
			/* Skip the RMW (and its cache-line write) when already set. */
			if ((atomic_load_explicit(&pg->w[wi], memory_order_relaxed) & mask) == mask)
				continue;
			uint64_t old = atomic_fetch_or(&pg->w[wi], mask);
			added += __builtin_popcountll(mask & ~old);
		}
		if (added)
			page_count_add(b, p, added);
	}
	return 0;
}

void bitmap_clear_range(struct bitmap *b, uint64_t first, uint64_t n)
{
	if (BM_NEVER(!range_ok(b, first, n))) {
		if (first >= b->nbits)
			return;
		n = b->nbits - first;
	}
	FOR_EACH_PAGE_RANGE(first, n, p, lo, hi) {
		struct bm_page *pg = page_get(b, p);
		if (!pg)
			continue;     /* absent: already clear, and I5 */
		int32_t removed = 0;
		for (uint64_t wi = lo / 64; wi * 64 < hi; wi++) {
			uint64_t mask = range_mask(wi, lo, hi);
			if (!(atomic_load_explicit(&pg->w[wi], memory_order_relaxed) & mask))
				continue;
			/* An RMW, not load+store: another clear of the same bits
			 * may race (B2 allows it) and each bit must be counted
			 * off exactly once (I3). */
			uint64_t old = atomic_fetch_and(&pg->w[wi], ~mask);
			removed += __builtin_popcountll(mask & old);
		}
		if (removed)
			page_count_sub(b, p, removed);
	}
}

/*
 * Exclusive writer (B2: it clears every bit, so no set may run): plain
 * atomic stores instead of RMWs.  Cost: a scan of present[] (one word per
 * 64 pages: 8 Ki words, 64 KiB, for 2^34 bits) plus ~100 ns per present
 * page that has bits set; absent pages cost nothing (I5).
 * Pages stay allocated (B1).  Order per group of 64 pages: full bits first,
 * so a concurrent find_next_unset never skips a page being cleared.
 */
void bitmap_clear_all(struct bitmap *b)
{
	for (uint64_t i = 0; i < b->nsum; i++) {
		uint64_t pw = atomic_load_explicit(&b->present[i], memory_order_acquire);
		if (!pw)
			continue;
		if (atomic_load_explicit(&b->full[i], memory_order_relaxed))
			atomic_store(&b->full[i], 0);
		while (pw) {
			uint64_t p = i * 64 + (unsigned)__builtin_ctzll(pw);
			pw &= pw - 1;
			struct bm_page *pg = page_get(b, p);
			if (!pg || atomic_load_explicit(&b->cnt[p], memory_order_relaxed) == 0)
				continue;
			for (unsigned wi = 0; wi < PAGE_WORDS; wi++)
				atomic_store_explicit(&pg->w[wi], 0, memory_order_relaxed);
			atomic_store_explicit(&b->cnt[p], 0, memory_order_relaxed);
		}
	}
	atomic_thread_fence(memory_order_seq_cst);
}

/* ---------------------------------------------------------------------- */
/* Counting                                                                */

/* A page's count clamped to what it can hold: cnt may briefly lag (I3). */
static uint64_t page_count(const struct bitmap *b, uint64_t p)
{
	int32_t c = atomic_load_explicit(&b->cnt[p], memory_order_acquire);
	int32_t limit = page_limit(b, p);
	return c < 0 ? 0 : (uint64_t)(c > limit ? limit : c);
}

uint64_t bitmap_count(const struct bitmap *b)
{
	uint64_t total = 0;
	for (uint64_t i = 0; i < b->nsum; i++) {
		uint64_t pw = atomic_load_explicit(&b->present[i], memory_order_acquire);
		while (pw) {
			uint64_t p = i * 64 + (unsigned)__builtin_ctzll(pw);
			pw &= pw - 1;
			total += page_count(b, p);
		}
	}
	return total;
}

uint64_t bitmap_count_range(const struct bitmap *b, uint64_t first, uint64_t n)
{
	if (BM_NEVER(!range_ok(b, first, n))) {
		if (first >= b->nbits)
			return 0;
		n = b->nbits - first;
	}
	uint64_t total = 0;
	FOR_EACH_PAGE_RANGE(first, n, p, lo, hi) {
		struct bm_page *pg = page_get(b, p);
		if (!pg)
			continue;
		if (lo == 0 && hi >= (uint64_t)page_limit(b, p)) {
			total += page_count(b, p);   /* whole page: O(1) */
			continue;
		}
		for (uint64_t wi = lo / 64; wi * 64 < hi; wi++) {
			uint64_t w = atomic_load_explicit(&pg->w[wi], memory_order_acquire);
			total += (uint64_t)__builtin_popcountll(w & range_mask(wi, lo, hi));
		}
	}
	return total;
}

/* ---------------------------------------------------------------------- */
/* Searching                                                               */

/*
 * First page ≥ p whose bit is set in the summary array sum[] (inverted
 * when `invert`: the first page whose bit is clear), or UINT64_MAX past the
 * end.  A tight loop over words: 64 pages (2 Mi bits) per load, so even
 * 2^38 bits is 64 Ki words.  Bits for pages past npages in the last word are
 * never set (I1), so inverted they read "not full" and land past nbits,
 * which the callers treat as the end.
 */
static inline uint64_t summary_next(const struct bitmap *b,
				    _Atomic uint64_t *sum, bool invert, uint64_t p)
{
	uint64_t i = p / 64;
	uint64_t flip = invert ? ~0ull : 0;
	uint64_t w = (atomic_load_explicit(&sum[i], memory_order_acquire) ^ flip) &
		     word_bits_from((unsigned)(p % 64));
	while (!w) {
		if (++i >= b->nsum)
			return UINT64_MAX;
		w = atomic_load_explicit(&sum[i], memory_order_acquire) ^ flip;
	}
	return i * 64 + (unsigned)__builtin_ctzll(w);
}

uint64_t bitmap_find_next_unset(const struct bitmap *b, uint64_t from)
{
	const uint64_t nbits = b->nbits;

	while (from < nbits) {
		/* Skip the run of full pages (summary) starting at from's page. */
		uint64_t p = summary_next(b, b->full, true, from / BITMAP_PAGE_BITS);
		if (p >= b->npages)
			break;
		from = max_u64(from, p * BITMAP_PAGE_BITS);

		struct bm_page *pg = page_get(b, p);
		if (!pg)
			return from;  /* B1: absent page is all zero, and from < nbits */

		uint64_t off = from % BITMAP_PAGE_BITS;
		uint64_t wi = off / 64;
		/* Treat bits below from as set so they are not found. */
		uint64_t w = atomic_load_explicit(&pg->w[wi], memory_order_acquire) |
			     word_bits_below((unsigned)(off % 64));
		for (;;) {
			if (~w) {
				uint64_t bit = p * BITMAP_PAGE_BITS + wi * 64 +
					       (unsigned)__builtin_ctzll(~w);
				/* I1: bit nbits reads clear, so bit ≤ nbits
				 * already; the clamp only guards I1 itself. */
				return min_u64(bit, nbits);
			}
			if (++wi == PAGE_WORDS)
				break;
			w = atomic_load_explicit(&pg->w[wi], memory_order_acquire);
		}
		from = (p + 1) * BITMAP_PAGE_BITS;
	}
	return nbits;
}

uint64_t bitmap_find_next_set(const struct bitmap *b, uint64_t from)
{
	const uint64_t nbits = b->nbits;

	while (from < nbits) {
		/* Skip absent pages (I2). */
		uint64_t p = summary_next(b, b->present, false, from / BITMAP_PAGE_BITS);
		if (p >= b->npages)
			break;
		from = max_u64(from, p * BITMAP_PAGE_BITS);

		struct bm_page *pg = page_get(b, p);
		if (pg) {
			if (page_full(b, p))
				return from;
			uint64_t off = from % BITMAP_PAGE_BITS;
			uint64_t wi = off / 64;
			uint64_t w = atomic_load_explicit(&pg->w[wi], memory_order_acquire) &
				     word_bits_from((unsigned)(off % 64));
			for (;;) {
				if (w)   /* I1: never beyond nbits */
					return p * BITMAP_PAGE_BITS + wi * 64 +
					       (unsigned)__builtin_ctzll(w);
				if (++wi == PAGE_WORDS)
					break;
				w = atomic_load_explicit(&pg->w[wi], memory_order_acquire);
			}
		}
		from = (p + 1) * BITMAP_PAGE_BITS;
	}
	return nbits;
}

/* ---------------------------------------------------------------------- */
/* Accounting and checking                                                 */

/*
 * Bytes really allocated.  Pages: npresent × 4 KiB.  The mapping: each of
 * the four arrays is resident where it was written, and (I5) it is written
 * only for present pages, so an OS page of an array counts once any page it
 * covers is present.  One scan of present[] (npages/64 words) gives all four.
 */
uint64_t bitmap_mem_bytes(const struct bitmap *b)
{
	uint64_t total = sizeof *b +
		atomic_load_explicit(&b->npresent, memory_order_relaxed) * PAGE_BYTES;
	/* Pages of the bitmap covered by one OS page of each array; all are
	 * multiples of 64 for any OS page ≥ 512 bytes. */
	const uint64_t per[4] = {
		b->os_page / sizeof(*b->dir),
		b->os_page / sizeof(*b->cnt),
		b->os_page * 8,   /* full[] */
		b->os_page * 8,   /* present[] */
	};
	uint64_t last[4] = { UINT64_MAX, UINT64_MAX, UINT64_MAX, UINT64_MAX };

	for (uint64_t i = 0; i < b->nsum; i++) {
		if (!atomic_load_explicit(&b->present[i], memory_order_relaxed))
			continue;
		for (int a = 0; a < 4; a++) {
			uint64_t group = i * 64 / per[a];
			if (group != last[a]) {
				last[a] = group;
				total += b->os_page;
			}
		}
	}
	return total;
}

bool bitmap_check(const struct bitmap *b)
{
	uint64_t installed = 0;

	for (uint64_t i = 0; i < b->nsum; i++) {
		uint64_t pw = atomic_load(&b->present[i]);
		uint64_t fw = atomic_load(&b->full[i]);
		if (fw & ~pw)
			return false;                       /* full ⇒ present */
		for (unsigned k = 0; k < 64; k++) {
			uint64_t p = i * 64 + k;
			if (p >= b->npages) {
				if (pw >> k & 1 || fw >> k & 1)
					return false;       /* summary beyond the end */
				continue;
			}
			if (!(pw >> k & 1))
				continue;   /* I5: absent pages' entries are never read */
			struct bm_page *pg = atomic_load(&b->dir[p]);
			int32_t pop = 0;
			if (pg) {
				installed++;
				/* bits of the page that exist (I1) */
				uint64_t tail = b->nbits - p * BITMAP_PAGE_BITS;
				for (unsigned wi = 0; wi < PAGE_WORDS; wi++) {
					uint64_t w = atomic_load(&pg->w[wi]);
					uint64_t lo = wi * 64ull;
					uint64_t valid = tail >= lo + 64 ? ~0ull :
							 tail <= lo ? 0 :
							 word_bits_below((unsigned)(tail - lo));
					if (w & ~valid)
						return false;       /* I1 */
					pop += __builtin_popcountll(w);
				}
			}
			if (atomic_load(&b->cnt[p]) != pop)
				return false;                   /* I3 */
			if ((fw >> k & 1) != (pop == page_limit(b, p)))
				return false;                   /* I4 */
		}
	}
	return installed == atomic_load(&b->npresent);
}
