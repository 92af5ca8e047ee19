#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the ds8000 driver's failures over dscli — a wrong password (exit 5), an HMC that does not answer (exit 3), thirteen targets on one source (refused before sending), restore before any flash, an option of another system type: each a clear message naming what failed, the session Severe where an action failed, nothing left on the array.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/driver-lib.sh"
start_emulator
start_mgmt
M=$((1024 * 1024))
mkvol 0100 0200 0201 0202 0203 0204 0205 0206 0207 0208 0209 020A 020B 020C $M

# --- Restore before any flash: nothing to restore from.
add_system ds8k dscli
expect_pcm 0 session create one --system ds8k
expect_pcm 0 session add-copyset one --h1 0100 --t1 0200
expect_pcm 1 session restore one
contains "$err" "never flashed"

# --- Thirteen targets for 0100: twelve made by hand, the session's is refused.
for t in 0201 0202 0203 0204 0205 0206 0207 0208 0209 020A 020B 020C; do
    expect_dscli 0 mkflash -nocp 0100:$t
done
expect_pcm 1 session flash one --json
contains "$out" "source volume 0100 would have 13 FlashCopy targets; a DS8000 allows 12 (nothing was sent)"
expect_pcm 0 session show one --json
check_json '.state == "Suspended" and .status == "Severe"'
[ "$(relationships | wc -l)" = 12 ] || fail "the refused flash changed the array: $(relationships)"
expect_dscli 0 rmflash -quiet 0100:020C
expect_pcm 0 session flash one --json
check_json '.outcome == "ok" and .session_state.status == "Normal"'
expect_pcm 0 session terminate one
expect_dscli 0 rmflash -quiet 0100:0201 0100:0202 0100:0203 0100:0204 0100:0205 0100:0206 \
    0100:0207 0100:0208 0100:0209 0100:020A 0100:020B
[ -z "$(relationships)" ] || fail "left: $(relationships)"

# --- A wrong password: dscli exits 5 with CMUN00018E; said as such.
printf 'not-the-password\n' >"$tmp/pw-wrong"
chmod 600 "$tmp/pw-wrong"
expect_pcm 0 system add wrongpw --type ds8000 --via dscli --hmc "$DS8KEMU_HOST:$DS8KEMU_PORT" \
    --user admin --password-file "$tmp/pw-wrong" --dscli "$DS8KEMU_DSCLI"
expect_pcm 0 session create two --system wrongpw
expect_pcm 0 session add-copyset two --h1 0201 --t1 0202
expect_pcm 1 session flash two --json
contains "$out" "CMUN00018E"
contains "$out" "dscli exit 5: authentication failed"
expect_pcm 0 session show two --json
check_json '.status == "Severe" and (.message | contains("CMUN00018E"))'

# --- An HMC nothing listens on: dscli exits 3.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_pcm 0 system add gone --type ds8000 --via dscli --hmc "127.0.0.1:$port" --user admin \
    --password-file "$DS8KEMU_PASSWORD_FILE" --dscli "$DS8KEMU_DSCLI"
expect_pcm 0 session create three --system gone
expect_pcm 0 session add-copyset three --h1 0203 --t1 0204
expect_pcm 1 session flash three --json
contains "$out" "dscli exit 3: cannot reach the HMC"
expect_pcm 0 session show three --json
check_json '.status == "Severe"'
[ -z "$(relationships)" ] || fail "left: $(relationships)"

# --- An option of another system type: refused by name, nothing added.
expect_pcm 1 system add wrongopt --type ds8000 --hmc "$DS8KEMU_HOST:$DS8KEMU_PORT" \
    --user admin --password-file "$DS8KEMU_PASSWORD_FILE" --known-hosts /dev/null
contains "$err" "type ds8000 takes --hmc"
contains "$err" "not --known-hosts"
expect_pcm 1 system show wrongopt
echo "ok"
