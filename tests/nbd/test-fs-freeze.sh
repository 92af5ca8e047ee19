#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: ext4 over nbdfuse and a loop device, frozen (fsfreeze) for each flash: every target mounts read-only holding exactly the files as at its flash, the source its newest.
#
# Two points in time on one source: m1 (no background copy) at the first
# flash, m2 (copy rate 100, copying while the source is rewritten) at the
# second.  Each flash is `fsfreeze -f`, `pitcopy map start`, `fsfreeze -u`:
# the freeze writes everything back and leaves the journal clean, so the
# target is a filesystem that needs no recovery.  Then each target, read
# through its own nbdfuse and a read-only loop device, must pass
# `e2fsck -fn`, mount read-only and hold exactly the tree (types, modes,
# sizes, symlinks, SHA-256 of every file) recorded at its flash.
#
# Needs root (loop devices, mount, fsfreeze) and FUSE; skips without them.
. "$(dirname "$0")/functions.sh"

skip()
{
    echo "$(basename "$0"): $*, skipping"
    exit 77
}

[ "$(id -u)" = 0 ] || skip "needs root (loop devices, mount, fsfreeze)"
# mkfs.ext4, losetup and fsfreeze live in sbin, which a root shell from
# plain su may lack.
PATH=$PATH:/usr/sbin:/sbin
[ -c /dev/fuse ] || skip "/dev/fuse is missing"
grep -qw fuse /proc/filesystems || skip "the kernel has no FUSE"
requires nbdfuse --version
requires mkfs.ext4 -V
requires e2fsck -V
requires fsfreeze --version
requires losetup --version
requires sha256sum --version

new_tmpdir
# mountinfo shows resolved paths; is_mounted compares with them.
d=$(cd "$tmpdir" && pwd -P) || fail "cd $tmpdir"

# Is PATH a mount point?  From mountinfo, without stat(2): a dead nbdfuse
# mount answers stat with ENOTCONN.
is_mounted()
{
    awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo
}

# Undo attach and mount for NAME, whatever of them got done.  Idempotent;
# never calls fail (it runs at exit, where that would cut the cleanup
# short) but returns 1 when a mount is left; touches only what this test
# made: the loop device is detached only while it still reads our file.
detach()
{
    local n=$1 img=$d/$1.img mnt=$d/$1.mnt dev pid i rc=0
    if is_mounted "$mnt"; then
        fsfreeze -u "$mnt" 2>/dev/null # a failure between freeze and thaw
        umount "$mnt" || echo "detach: umount $mnt failed" >&2
    fi
    dev=$(cat "$d/$n.loop" 2>/dev/null)
    if [ -n "$dev" ] && [ "$(losetup -n -O BACK-FILE "$dev" 2>/dev/null)" = "$img" ]; then
        losetup -d "$dev" || echo "detach: losetup -d $dev failed" >&2
    fi
    rm -f "$d/$n.loop"
    # The loop device lets go of the file asynchronously: retry while busy.
    for ((i = 0; i < 50; i++)); do
        is_mounted "$img" || break
        umount "$img" 2>/dev/null && break
        sleep 0.1
    done
    if is_mounted "$img" || is_mounted "$mnt"; then
        echo "detach: $img or $mnt is still mounted" >&2
        rc=1
    fi
    pid=$(cat "$d/$n.nbdfuse" 2>/dev/null)
    if [ -n "$pid" ]; then
        # nbdfuse leaves by itself once its mount is gone.
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill "$pid" 2>/dev/null && echo "detach: nbdfuse $pid had to be killed" >&2
        wait "$pid" 2>/dev/null
        rm -f "$d/$n.nbdfuse"
    fi
    return $rc
}

# attach NAME EXPORT [ro]: the export as the file $d/NAME.img (nbdfuse mounts
# over a plain file), and a loop device over that file in $dev; with ro,
# read-only at both levels.
attach()
{
    local n=$1 img=$d/$1.img ro=${3:-} pid i
    : > "$img"
    rm -f "$d/$n.pid"
    cleanup_fn_before_stop "detach $n"
    nbdfuse ${ro:+-r} -P "$d/$n.pid" "$img" "$(uri "$2")" > "$d/$n.nbdfuse.log" 2>&1 &
    pid=$!
    echo "$pid" > "$d/$n.nbdfuse"
    for ((i = 0; i < 100; i++)); do
        [ -s "$d/$n.pid" ] && is_mounted "$img" && break
        kill -0 "$pid" 2>/dev/null || { cat "$d/$n.nbdfuse.log"; fail "nbdfuse $2 exited"; }
        sleep 0.1
    done
    is_mounted "$img" || fail "nbdfuse did not mount $2 on $img within 10 s"
    # 4 KiB sectors: the daemon serves 4 KiB-aligned requests only (its
    # NBD_INFO_BLOCK_SIZE minimum), libnbd refuses others before sending
    # them, and nbdfuse passes the loop device's I/O on as it comes.  With
    # 512-byte sectors ext4's 1 KiB superblock write at byte 1024 fails with
    # EIO and so does the mount.  Buffered I/O (the default, spelled out):
    # FUSE without -o writeback_cache writes through to nbdfuse, so a write
    # the loop device completes has reached the daemon, and the flushes of
    # fsfreeze reach it as fsync, then NBD FLUSH.
    dev=$(losetup -f --show ${ro:+-r} --sector-size 4096 --direct-io=off "$img") ||
        fail "losetup $img"
    echo "$dev" > "$d/$n.loop"
}

# Everything under DIR but lost+found: type, mode, size, path, symlink
# target; then the SHA-256 of every file.
manifest()
{
    (
        cd "$1" || exit 1
        find . -mindepth 1 -path ./lost+found -prune -o -printf '%y %m %s %p -> %l\n' |
            LC_ALL=C sort
        find . -path ./lost+found -prune -o -type f -print0 | LC_ALL=C sort -z |
            xargs -0r sha256sum
    )
}

# N random files of 0–128 KiB (most not a multiple of 4 KiB) in DIR.
small_files()
{
    local dir=$1 n=$2 i
    mkdir -p "$dir" || fail "mkdir $dir"
    for ((i = 0; i < n; i++)); do
        head -c $((RANDOM * 4)) /dev/urandom > "$dir/f$i" || fail "write $dir/f$i"
    done
}

# Overwrite COUNT 4 KiB blocks of FILE in place from block SEEK.
overwrite()
{
    must dd if=/dev/urandom of="$1" bs=4k seek="$2" count="$3" conv=notrunc status=none
}

# The point in time: with the filesystem frozen, all of it is on the source
# volume and its journal is clean; the mapping starts; thawed.
flash()
{
    must fsfreeze -f "$d/src.mnt"
    if ! pc map start "$1"; then
        fsfreeze -u "$d/src.mnt"
        fail "pc map start $1"
    fi
    must fsfreeze -u "$d/src.mnt"
}

# check NAME EXPORT MANIFEST: the export, read-only all the way down, is a
# consistent ext4 that mounts read-only and holds exactly MANIFEST.
check()
{
    attach "$1" "$2" ro
    # -f: check even a filesystem marked clean; -n: open read-only, fix nothing.
    e2fsck -fn "$dev" > "$d/$1.fsck" 2>&1 ||
        { cat "$d/$1.fsck"; fail "e2fsck: $2 is not a consistent ext4"; }
    # Plain ro, not ro,noload: a flash under fsfreeze has a clean journal.
    # One that needed replaying could not be mounted from the read-only loop
    # device, and that would be a failure of this test, not to be hidden.
    mkdir -p "$d/$1.mnt"
    must mount -t ext4 -o ro "$dev" "$d/$1.mnt"
    manifest "$d/$1.mnt" > "$d/$1.manifest" || fail "manifest of $2"
    diff -u "$3" "$d/$1.manifest" || fail "$2 does not hold the files of $3"
    detach "$1" || fail "detach $1"
}

# Loop devices and ext4 mounts may still be refused (a container without
# CAP_SYS_ADMIN, no loop driver): probe both on a plain file first.
truncate -s 16M "$d/probe.img" || fail "truncate $d/probe.img"
mkdir "$d/probe.mnt" || fail "mkdir $d/probe.mnt"
cleanup_fn_before_stop "detach probe"
dev=$(losetup -f --show "$d/probe.img" 2>/dev/null) || skip "losetup cannot attach a loop device"
echo "$dev" > "$d/probe.loop"
mkfs.ext4 -q "$dev" 2>/dev/null || skip "mkfs.ext4 fails on a loop device"
mount "$dev" "$d/probe.mnt" 2>/dev/null || skip "cannot mount ext4 from a loop device"
fsfreeze -f "$d/probe.mnt" 2>/dev/null || skip "fsfreeze refused on ext4"
fsfreeze -u "$d/probe.mnt"
detach probe || fail "detach probe"

start_pitcopy
must pc volume create src --size 256M
must pc volume create tgt --size 256M
must pc volume create tgt2 --size 256M
must pc map create src tgt --name m1 --copy-rate 0
must pc map create src tgt2 --name m2 --copy-rate 100

# 1. A filesystem on the source, through nbdfuse (4 connections: multi-conn).
attach src src
must mkfs.ext4 -q "$dev"
mkdir "$d/src.mnt" || fail "mkdir $d/src.mnt"
must mount -t ext4 "$dev" "$d/src.mnt"
s=$d/src.mnt
for i in 0 1 2 3; do small_files "$s/d$i" 40; done
small_files "$s/d0/sub" 20
must head -c 32M /dev/urandom > "$s/big1"
must head -c 24M /dev/urandom > "$s/big2"
must head -c 16M /dev/urandom > "$s/big3"
must truncate -s 20M "$s/sparse"
overwrite "$s/sparse" 1000 3
must touch "$s/empty"
must ln -s d0/f1 "$s/link"
must sync -f "$s"
manifest "$s" > "$d/flash1.manifest" || fail "manifest at flash 1"

# 2. The first point in time: m1, no background copy.
flash m1

# 3. The source moves on: in-place overwrites (part grains, whole grains),
#    appends, deletes, renames, new files.
overwrite "$s/big1" 1283 3
overwrite "$s/big1" 2048 256
must head -c 100K /dev/urandom >> "$s/big2"
must rm -r "$s/d1"
for i in 0 1 2 3 4 5 6 7 8 9; do echo "after flash 1" >> "$s/d2/f$i" || fail "append"; done
must truncate -s 0 "$s/d3/f0"
must mv "$s/d0/f5" "$s/d3/moved"
small_files "$s/after1" 40
must head -c 16M /dev/urandom > "$s/big4"
must touch "$s/after-flash-1"
must sync -f "$s"
manifest "$s" > "$d/flash2.manifest" || fail "manifest at flash 2"

# 4. The second point in time: m2, newest in the chain, copying in the
#    background while the source is rewritten again.
flash m2
must dd if=/dev/urandom of="$s/big1" bs=1M count=32 conv=notrunc status=none
must rm "$s/big2"
overwrite "$s/sparse" 10 2
overwrite "$s/big4" 0 1
must rm -r "$s/after1/f1" "$s/d0/sub"
small_files "$s/after2" 20
must touch "$s/after-flash-2"
must sync -f "$s"
manifest "$s" > "$d/now.manifest" || fail "manifest of the source"
must pc map wait m2 --state idle_or_copied --timeout 60

# 5. The source's stack comes down (its umount writes too), then each
#    volume is read through a fresh one: nothing comes from a page cache
#    that the writes went through.
detach src || fail "detach src"
check tgt tgt "$d/flash1.manifest"
check tgt2 tgt2 "$d/flash2.manifest"
check src src "$d/now.manifest"
# The three points in time differ (else a target showing the newest
# source would pass).
cmp -s "$d/flash1.manifest" "$d/flash2.manifest" && fail "flash 1 and 2 look the same"
cmp -s "$d/flash2.manifest" "$d/now.manifest" && fail "flash 2 and the source look the same"
exit 0
