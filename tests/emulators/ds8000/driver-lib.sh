# SPDX-License-Identifier: MIT
# tests/emulators/ds8000/driver-lib.sh — what the `ds8000` driver tests share
# (sourced after lib.sh; the emulator's `pitcopy serve` is the array's, so the
# driver runs in a second one, the management host).
#
#   start_mgmt, mgmt_stop, pcm, expect_pcm, check_json   ../mgmt-lib.sh
#   add_system NAME VIA [ARGS]   `system add NAME --type ds8000 --via VIA`
#   relationships           the array's FlashCopy pairs (lsflash), one a line
. "$(dirname "${BASH_SOURCE[0]}")/../mgmt-lib.sh"

test_cleanup()
{
    mgmt_stop
    declare -F test_cleanup_more >/dev/null && test_cleanup_more
    return 0
}

add_system()
{
    local name=$1 via=$2
    shift 2
    expect_pcm 0 system add "$name" --type ds8000 --via "$via" \
        --hmc "$DS8KEMU_HOST:$DS8KEMU_PORT" --user "$DS8KEMU_USER" \
        --password-file "$DS8KEMU_PASSWORD_FILE" --cacert "$DS8KEMU_CACERT" \
        --dscli "$DS8KEMU_DSCLI" "$@"
}

relationships()
{
    expect_dscli 0 lsflash -fmt delim -hdr off -bnr off 0000-FFFF
    echo "$out" | grep -v '^CMUC00234I' | cut -d, -f1
}
