/* SPDX-License-Identifier: MIT */
/*
 * tests/common/metautil.h — helpers for tests of persistent mapping metadata
 * (engine/meta.h): mappings with a metadata file beside their volumes,
 * engine restarts that reopen the fixture's volumes, crash snapshots, and
 * raw access to the metadata file's blocks.
 *
 * A metadata file is DIR/MAP.meta, DIR being the directory the fixture's
 * volumes live in now (tu_eng.dir, or a snapshot under it after
 * mu_restart(f, "sub")).  Every helper asserts.
 */
#ifndef PITCOPY_METAUTIL_H
#define PITCOPY_METAUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engineutil.h"

/* DIR/MAP.meta for a mapping whose target is tgt. */
void mu_meta_path(const struct tu_vol *tgt, const char *map, char *out, size_t len);

/* pc_map_create with a fresh metadata file; asserts success. */
struct pc_map *mu_map(struct tu_eng *f, const char *name, struct tu_vol *src,
                      struct tu_vol *tgt, uint32_t grain, int copy_rate,
                      enum pc_durability d);
/* pc_map_create with recover; asserts the call succeeds (a file it cannot
 * trust still gives a mapping, stopped: check pc_map_info().invalid). */
struct pc_map *mu_recover(struct tu_eng *f, const char *name, struct tu_vol *src,
                          struct tu_vol *tgt, uint32_t grain, enum pc_durability d);

/* What a crash would leave: copy every file of the volumes' directory
 * (volumes and metadata, sparse) into tu_eng.dir/sub, while the engine runs.
 * Call it once the I/O of interest has completed. */
void mu_snapshot(struct tu_eng *f, const char *sub);
/* pc_engine_destroy (an orderly shutdown), a new engine on the same backend,
 * and every fixture volume opened again — from tu_eng.dir/sub when sub is
 * not NULL (a snapshot), else where it was.  Mappings must be recreated. */
void mu_restart(struct tu_eng *f, const char *sub);

/* One 4 KiB block of a metadata file, read or written behind the engine. */
void mu_block_read(const char *path, uint64_t blockno, void *blk);
void mu_block_write(const char *path, uint64_t blockno, const void *blk);
/* Invert the byte at off. */
void mu_flip(const char *path, uint64_t off);
/* The xxh64 a block must carry (engine/meta.h): its checksum field zero. */
uint64_t mu_block_sum(const void *blk, size_t sum_off);
bool mu_exists(const char *path);

/* Either of the above (recover), for an incremental mapping or not. */
struct pc_map *mu_map_ex(struct tu_eng *f, const char *name, struct tu_vol *src,
                         struct tu_vol *tgt, uint32_t grain, int copy_rate,
                         enum pc_durability d, bool recover, bool incremental);

/* Wait until pc_map_info(m).grains_split stops changing (background copy
 * extents still running after a rate change); returns it. */
uint64_t mu_wait_stable(struct pc_map *m);

/* An errno rule for io_fault_add on the file at path (its full path, so no
 * other file matches): "PATH:op:err[:after[:count]]". */
void mu_fault(const char *path, const char *rest);

#endif
