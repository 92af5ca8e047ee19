# SPDX-License-Identifier: MIT
# tests/emulators/svc/driver-lib.sh — what the `svc` driver tests share
# (sourced after lib.sh's start_emulator has run).
#
#   start_mgmt, mgmt_stop, pcm, expect_pcm, check_json   ../mgmt-lib.sh
#   add_ssh_system NAME [ARGS]   `system add NAME --type svc` over SSH
#   add_rest_system NAME [ARGS]  the same over REST
#   fcmaps               the array's mapping names, one a line (lsfcmap)
#   fcgroups             the array's group names
#   make_vdisks SIZE_MB NAME...
. "$(dirname "${BASH_SOURCE[0]}")/../mgmt-lib.sh"

_mgmt_cleanup()
{
    mgmt_stop
    _svc_cleanup
}
trap _mgmt_cleanup EXIT

add_ssh_system()
{
    local name=$1
    shift
    expect_pcm 0 system add "$name" --type svc --host "$SVCEMU_HOST" --port "$SVCEMU_SSH_PORT" \
        --user "$SVCEMU_SSH_USER" --key "$SVCEMU_SSH_KEY" --known-hosts "$SVCEMU_KNOWN_HOSTS" "$@"
}

add_rest_system()
{
    local name=$1
    shift
    expect_pcm 0 system add "$name" --type svc --rest "$SVCEMU_REST_URL" \
        --user "$SVCEMU_REST_USER" --password-file "$SVCEMU_PASSWORD_FILE" \
        --cacert "$SVCEMU_CACERT" "$@"
}

fcmaps()
{
    expect_svc 0 'svcinfo lsfcmap -delim !'
    echo "$out" | awk -F'!' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "name") c = i; next }
                             { print $c }'
}

fcgroups()
{
    expect_svc 0 'svcinfo lsfcconsistgrp -delim !'
    echo "$out" | awk -F'!' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "name") c = i; next }
                             { print $c }'
}

make_vdisks()
{
    local size=$1 v
    shift
    for v in "$@"; do
        expect_svc 0 "svctask mkvdisk -name $v -mdiskgrp Pool0 -size $size -unit mb"
    done
}
