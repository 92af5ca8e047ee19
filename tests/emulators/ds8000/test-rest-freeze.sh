#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the REST API — token auth, a multi-LSS establish with freeze_consistency taken under a running writer is one point in time (counters agree), the sources' LSSs are frozen until unfreeze, refresh and withdraw; the targets' bytes checked.
. "$(dirname "$0")/lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator
password=$(cat "$DS8KEMU_PASSWORD_FILE")

M=$((4 * 1024 * 1024))
# Three LSSs: 01, 11 and 21 hold the sources; 02 the targets.
mkvol 0100 1100 2100 0200 0201 0202 $M

rest_login admin "$password"
[ "$code" = 200 ] || fail "login: HTTP $code: $body"
check_body '.server.status == "ok"'
[ -n "$token" ] && grep -qi "^X-Auth-Token: $token" "$tmp/headers" || fail "token header/body: $body"
expect_rest 200 GET /volumes
check_body '[.data.volumes[].id] == ["0100","0200","0201","0202","1100","2100"]'
check_body '.data.volumes[0].cap == "4194304" and .data.volumes[0].lss.id == "01"'

# A writer bumps a counter on 0100, then 1100, then 2100, over and over,
# while the three pairs are established with freeze: one point in time
# sees 0100's counter equal to or one past 1100's, and 1100's to 2100's.
write_pattern 0100 0x61 0 $M
"$_ds8k_dir/counters.py" write "$DS8KEMU_NBD_SOCK" 75FA120-0100 75FA120-1100 75FA120-2100 \
    --stop "$tmp/stop" >"$tmp/writer.out" 2>&1 &
writer=$!
test_cleanup() { touch "$tmp/stop"; wait "$writer" 2>/dev/null; }
sleep 0.3
expect_rest 201 POST /cs/flashcopies '{"request": {"params": {"volume_pairs": [
    {"source_volume": "0100", "target_volume": "0200"},
    {"source_volume": "1100", "target_volume": "0201"},
    {"source_volume": "2100", "target_volume": "0202"}],
    "options": ["freeze_consistency", "no_background_copy", "persistent", "record_changes"]}}}'
check_body '.server.code == "CMUC00137I" and (.data.flashcopy | length) == 3'
check_body '[.data.flashcopy[].source_write_enabled] == ["disabled","disabled","disabled"]'
sleep 0.2
touch "$tmp/stop"
wait "$writer" || fail "the writer failed: $(cat "$tmp/writer.out")"
writes=$(cat "$tmp/writer.out")
a=$("$_ds8k_dir/counters.py" read "$DS8KEMU_NBD_SOCK" 75FA120-0200)
b=$("$_ds8k_dir/counters.py" read "$DS8KEMU_NBD_SOCK" 75FA120-0201)
c=$("$_ds8k_dir/counters.py" read "$DS8KEMU_NBD_SOCK" 75FA120-0202)
echo "writer: $writes rounds; at the flash 0100=$a 1100=$b 2100=$c"
[ "$a" -gt 0 ] && [ "$a" -lt "$writes" ] || fail "the flash was not taken while the writer ran ($a of $writes)"
{ [ "$a" = "$b" ] || [ "$a" = $((b + 1)) ]; } && { [ "$b" = "$c" ] || [ "$b" = $((c + 1)) ]; } ||
    fail "not one point in time: 0100=$a 1100=$b 2100=$c"
# And past the counter block, the target is the source as it was.
pattern_file "$tmp/want" 0x61 $M
read_vol 0200 "$tmp/got"
cmp -i 4096 "$tmp/want" "$tmp/got" || fail "0200 past the counter is not 0100 as it was"

# Frozen until unfreeze: the sources' LSSs, not the targets'.
expect_rest 200 GET /lss
check_body '[.data.lss[] | select(.frozen) | .id] == ["01","11","21"]'
expect_rest 200 POST /cs/flashcopies/unfreeze '{"request": {"params": {"lss_ids": ["01", "11", "21"]}}}'
check_body '.server.code == "CMUC00172I"'
expect_rest 200 GET '/cs/flashcopies?volume_id_from=0000&volume_id_to=FFFF'
check_body '[.data.flashcopy[].id] == ["0100:0200","1100:0201","2100:0202"]'
check_body '[.data.flashcopy[].source_write_enabled] == ["enabled","enabled","enabled"]'
check_body '.data.flashcopy[0].recording == "enabled" and .data.flashcopy[0].backgroundcopy == "disabled"'
expect_rest 200 GET /cs/flashcopies/1100:0201
check_body '.data.flashcopy[0].source_volume.id == "1100" and .data.flashcopy[0].target_volume.id == "0201"'

# Refresh (the same pairs again with record_changes): the targets take the sources as they are now.
write_pattern 1100 0x62 0 $M
expect_rest 201 POST /cs/flashcopies '{"request": {"params": {"volume_pairs": [
    {"source_volume": "1100", "target_volume": "0201"}], "options": ["record_changes", "persistent"]}}}'
check_body '.server.code == "CMUC00168I"'
write_pattern 1100 0x63 0 $M
pattern_file "$tmp/want" 0x62 $M
read_vol 0201 "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "0201 is not 1100 as it was at the refresh"

# Withdraw.
for p in 0100:0200 1100:0201 2100:0202; do expect_rest 200 DELETE /cs/flashcopies/$p; done
expect_rest 404 DELETE /cs/flashcopies/0100:0200
check_body '.server.status == "failed" and .server.code == "CMUN03005E"'
expect_rest 200 GET /cs/flashcopies
check_body '.data.flashcopy == []'
echo PASS
