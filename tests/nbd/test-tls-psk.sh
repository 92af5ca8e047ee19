#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: NBD over TLS with pre-shared keys (--tls-psk): nbdinfo and nbdcopy round-trip data as a known user; a wrong key, an unknown user or no TLS gets nothing; --tls on serves both kinds of client; a PSK file others can read is refused at start.
. "$(dirname "$0")/functions.sh"
requires nbdinfo --version
requires nbdcopy --version

new_tmpdir
d=$tmpdir
psk_file "$d/keys.psk" alice
psk_file "$d/keys.psk" bob
psk_file "$d/wrong.psk" alice          # alice, another key
psk_file "$d/carol.psk" carol          # a user the server does not know
random_file "$d/in.img" 64M

start_pitcopy --tls-psk "$d/keys.psk"
grep -q "TLS required: pre-shared keys from $d/keys.psk (2 users)" "$_pitcopy_log" ||
    fail "the start-up log does not describe the keys"
must pc volume create v1 --size 64M
psk_uri() { echo "nbds+unix://$1@/$2?socket=$sock&tls-psk-file=$3"; }

[ "$(nbdinfo --size "$(psk_uri alice v1 "$d/keys.psk")")" = $((64 << 20)) ] ||
    fail "nbdinfo as alice"
grep -q 'PSK user "alice"' "$_pitcopy_log" || fail "the log does not name the PSK user"
must nbdcopy "$d/in.img" "$(psk_uri alice v1 "$d/keys.psk")"
must nbdcopy --connections=4 "$(psk_uri bob v1 "$d/keys.psk")" "$d/out.img"
must cmp "$d/in.img" "$d/out.img"

if nbdinfo --size "$(psk_uri alice v1 "$d/wrong.psk")" >/dev/null 2>&1; then
    fail "a wrong key was accepted"
fi
if nbdinfo --size "$(psk_uri carol v1 "$d/carol.psk")" >/dev/null 2>&1; then
    fail "an unknown user was accepted"
fi
[ "$(grep -c "closed (export none, 0 requests, 0 errors): TLS handshake failed: " \
    "$_pitcopy_log")" = 2 ] || fail "the log does not say why the keys were refused"
# Neither key is ever logged.
for k in $(cut -d: -f2 "$d/keys.psk" "$d/wrong.psk"); do
    ! grep -q "${k:0:16}" "$_pitcopy_log" || fail "a key is in the log"
done
if nbdinfo --size "$(uri v1)" >/dev/null 2>&1; then fail "a plain client was served"; fi
[ "$(nbdinfo --size "$(psk_uri bob v1 "$d/keys.psk")")" = $((64 << 20)) ] ||
    fail "server unwell after the refusals"
stop_pitcopy || fail "pitcopy serve did not stop cleanly"

# --tls on: the client chooses.
start_pitcopy --tls-psk "$d/keys.psk" --tls on
must pc volume create v1 --size 64M
must nbdcopy "$d/in.img" "$(uri v1)"
must nbdcopy "$(psk_uri alice v1 "$d/keys.psk")" "$d/out2.img"
must cmp "$d/in.img" "$d/out2.img"
info=$(nbdinfo "$(uri v1)") || fail "nbdinfo without TLS"
grep -q "without TLS" <<<"$info" || fail "expected a plain connection"
stop_pitcopy || fail "pitcopy serve did not stop cleanly"

# A key file others may read, or that is not ours to trust: refused,
# naming the file and never the key.
chmod 0640 "$d/keys.psk"
expect_refused --tls-psk "$d/keys.psk"
grep -q "TLS PSK file $d/keys.psk is accessible to group or others (mode 0640); refusing to use it: chmod 600 $d/keys.psk" \
    <<<"$refusal" || fail "the refusal does not say what is wrong with the PSK file"
! grep -q "$(cut -d: -f2 "$d/keys.psk" | head -c 16)" <<<"$refusal" || fail "a key in the error"
chmod 0600 "$d/keys.psk"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    cp "$d/keys.psk" "$d/theirs.psk" && chown nobody "$d/theirs.psk" || fail "chown"
    expect_refused --tls-psk "$d/theirs.psk"
    grep -q "TLS PSK file $d/theirs.psk belongs to uid $(id -u nobody), not to uid 0 that pitcopy runs as" \
        <<<"$refusal" || fail "a PSK file of another user was not refused"
fi
echo "alice:not-a-key" > "$d/bad.psk" && chmod 600 "$d/bad.psk"
expect_refused --tls-psk "$d/bad.psk"
grep -q "TLS PSK file $d/bad.psk, line 1: the key must be 16 to 512 bytes in hexadecimal" \
    <<<"$refusal" || fail "a malformed PSK file was not refused"
! grep -q "not-a-key" <<<"$refusal" || fail "the file's contents are in the error"
exit 0
