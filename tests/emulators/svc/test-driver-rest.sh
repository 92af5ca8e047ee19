#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the svc driver over REST (libcurl, verified TLS) — the nightly flash byte for byte; a 0644 or foreign password file refused; wrong password and untrusted certificate Severe with nothing on the array; the password never in the daemon log, history, catalog or any process's argv.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/driver-lib.sh"
requires qemu-io --version
requires nbdcopy --version
start_emulator
start_mgmt
PASSWORD=$(cat "$SVCEMU_PASSWORD_FILE")
[ ${#PASSWORD} -ge 8 ] || fail "the emulator's password is too short to search for"

M=$((4 * 1024 * 1024))
make_vdisks 4 db db_copy
write_pattern db 0x31 0 $M

# --- A password file others can read is refused, naming it (not its content).
cp "$SVCEMU_PASSWORD_FILE" "$tmp/pw-0644"
chmod 644 "$tmp/pw-0644"
expect_pcm 1 system add loose --type svc --rest "$SVCEMU_REST_URL" --user superuser \
    --password-file "$tmp/pw-0644"
contains "$err" "password file $tmp/pw-0644 has mode 0644"
contains "$err" "chmod 600"
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    cp "$SVCEMU_PASSWORD_FILE" "$tmp/pw-nobody"
    chmod 600 "$tmp/pw-nobody"
    chown nobody "$tmp/pw-nobody"
    expect_pcm 1 system add foreign --type svc --rest "$SVCEMU_REST_URL" --user superuser \
        --password-file "$tmp/pw-nobody"
    contains "$err" "belongs to uid"
fi
expect_pcm 1 system add plain --type svc --rest "http://127.0.0.1:1" --user superuser \
    --password-file "$SVCEMU_PASSWORD_FILE"
contains "$err" "not an https:// URL"

# --- The nightly flash over REST, with ps sampled all along.
add_rest_system fs --json
check_json '.connection.transport == "rest" and .connection.password_file != null and (.connection | has("password") | not)'
expect_pcm 0 session create nightly --system fs
expect_pcm 0 session add-copyset nightly --h1 db --t1 db_copy
expect_pcm 0 session flash nightly --dry-run --json
url=$SVCEMU_REST_URL/rest
echo "$out" | jq -e --arg u "$url" '.commands == [
  "POST \($u)/mkfcconsistgrp {\"name\":\"csm-nightly\"}",
  "POST \($u)/mkfcmap {\"source\":\"db\",\"target\":\"db_copy\",\"name\":\"csm-nightly-1\",\"consistgrp\":\"csm-nightly\",\"copyrate\":\"0\",\"incremental\":true}",
  "POST \($u)/prestartfcconsistgrp/csm-nightly {}",
  "POST \($u)/startfcconsistgrp/csm-nightly {}"]' >/dev/null || { echo "$out"; fail "the dry run's requests"; }
[ -z "$(fcmaps)$(fcgroups)" ] || fail "a dry run changed the array"

( while :; do ps -eo args; sleep 0.01; done ) >"$tmp/ps.txt" 2>/dev/null &
ps_pid=$!
expect_pcm 0 session flash nightly --json
check_json '.outcome == "ok" and .session_state.state == "Target Available"'
kill "$ps_pid"; wait "$ps_pid" 2>/dev/null
grep -q "session flash nightly" "$tmp/ps.txt" || fail "ps never saw the flash: the sampling proves nothing"
write_pattern db 0x32 0 $M
pattern_file "$tmp/want" 0x31 $M
read_vdisk db_copy "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "db_copy is not db at the flash"
expect_pcm 0 session terminate nightly
[ -z "$(fcmaps)$(fcgroups)" ] || fail "terminate left $(fcmaps) $(fcgroups)"
expect_pcm 0 session remove-copyset nightly --h1 db

# --- A wrong password: Severe, nothing sent, the file named.
echo "not-the-password" >"$tmp/pw-wrong"
chmod 600 "$tmp/pw-wrong"
expect_pcm 0 system add wrongpw --type svc --rest "$SVCEMU_REST_URL" --user superuser \
    --password-file "$tmp/pw-wrong" --cacert "$SVCEMU_CACERT"
expect_pcm 0 session create s2 --system wrongpw
expect_pcm 1 session add-copyset s2 --h1 db --t1 db_copy
contains "$err" "refused the login of user superuser"
# A password changed after the copy set was added: the flash is Severe.
cp "$SVCEMU_PASSWORD_FILE" "$tmp/pw-wrong"
expect_pcm 0 session add-copyset s2 --h1 db --t1 db_copy
echo "not-the-password" >"$tmp/pw-wrong"
expect_pcm 1 session flash s2
contains "$err" "wrong user name or password (the password is read from $tmp/pw-wrong)"
expect_pcm 0 session show s2 --json
check_json '.state == "Suspended" and .status == "Severe" and (.message | contains("refused the login"))'
[ -z "$(fcmaps)$(fcgroups)" ] || fail "a refused login changed the array"
# The file turned world-readable after it was added: refused at use too.
chmod 644 "$tmp/pw-wrong"
expect_pcm 1 session flash s2
contains "$err" "has mode 0644"

expect_pcm 0 session delete s2

# --- No --cacert: the emulator's certificate is not trusted.
expect_pcm 0 system add nocert --type svc --rest "$SVCEMU_REST_URL" --user superuser \
    --password-file "$SVCEMU_PASSWORD_FILE"
expect_pcm 0 session create s3 --system nocert
expect_pcm 1 session add-copyset s3 --h1 db --t1 db_copy
contains "$err" "TLS certificate is not trusted"
expect_pcm 0 system add trusting --type svc --rest "$SVCEMU_REST_URL" --user superuser \
    --password-file "$SVCEMU_PASSWORD_FILE" --insecure
expect_pcm 0 session create s4 --system trusting
expect_pcm 0 session add-copyset s4 --h1 db --t1 db_copy

# --- The password is nowhere: log, history, catalog, state dir, argv.
for s in nightly s2; do pcm session history $s --json; done >"$tmp/history.json"
pcm system list --json >"$tmp/systems.json"
for f in "$tmp/mgmt.log" "$tmp/history.json" "$tmp/systems.json" "$tmp/ps.txt"; do
    grep -qF -- "$PASSWORD" "$f" && fail "the password is in $f"
done
grep -rqF -- "$PASSWORD" "$MGMT" && fail "the password is in the state directory $MGMT"
echo PASS
