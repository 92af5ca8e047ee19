#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: IBM's own ansible FlashCopy modules (ibm.spectrum_virtualize, unchanged) against the emulator's REST API — group, snapshot, start, stop, delete — and the target holds the source at the flash.
. "$(dirname "$0")/lib.sh"
requires ansible --version
requires ansible-doc ibm.spectrum_virtualize.ibm_svc_manage_flashcopy
requires qemu-io --version
requires nbdcopy --version
# The modules always call https://CLUSTERNAME:7443/rest/.  Two test runs at
# once (CI and a coverage run, say) take turns for the port.
exec 9>"${TMPDIR:-/tmp}/pitcopy-svcemu-7443.lock"
if ! flock -w 300 9; then
    echo "port 7443 stayed taken by another pitcopy test run: skipping"
    exit 77
fi
if (exec 3<>/dev/tcp/127.0.0.1/7443) 2>/dev/null; then
    echo "port 7443 is in use and the ansible modules need it: skipping"
    exit 77
fi
start_emulator 7443
password=$(cat "$SVCEMU_PASSWORD_FILE")
export ANSIBLE_LOCAL_TEMP="$tmp/ansible" ANSIBLE_HOME="$tmp/ansible" ANSIBLE_LOAD_CALLBACK_PLUGINS=1 \
    ANSIBLE_STDOUT_CALLBACK=json ANSIBLE_PYTHON_INTERPRETER=/usr/bin/python3 \
    ANSIBLE_LOCALHOST_WARNING=false ANSIBLE_INVENTORY_UNPARSED_WARNING=false

# ans MODULE ARGS...: run one module; $result is its result object.
ans()
{
    local mod=$1
    shift
    # In $tmp: the collection writes IBMSV_ansible_collections.log where it runs.
    (cd "$tmp" && ansible localhost -c local -m "ibm.spectrum_virtualize.$mod" \
        -a "clustername=127.0.0.1 username=superuser password=$password validate_certs=false $*" \
        >"$tmp/ans.json" 2>"$tmp/ans.err")
    result=$(jq -c '.plays[0].tasks[0].hosts.localhost' "$tmp/ans.json") ||
        { cat "$tmp/ans.json" "$tmp/ans.err"; fail "ansible $mod gave no result"; }
    echo "$mod $* → $(echo "$result" | jq -c '{changed, msg}')" | sed "s/$password/PASSWORD/g"
}
# check FILTER: fail unless the last module result satisfies FILTER.
check()
{
    echo "$result" | jq -e "$1" >/dev/null || fail "ansible result: $result"
}

M=$((4 * 1024 * 1024))
expect_svc 0 'mkvdisk -name src -mdiskgrp Pool0 -size 4 -unit mb'
write_pattern src 0x5a 0 $M

ans ibm_svc_manage_consistgrp_flashcopy name=cg state=present
check '.changed == true and (.failed | not)'
ans ibm_svc_manage_flashcopy name=m1 state=present copytype=snapshot source=src target=tgt consistgrp=cg
check '.changed == true and .msg == "mapping [m1] has been created"'
ans ibm_svc_manage_flashcopy name=m1 state=present copytype=snapshot source=src target=tgt consistgrp=cg
check '.changed == false'                        # idempotent: it read the map back
expect_svc 0 'lsfcmap -delim ! m1'
[ "$(detail target_vdisk_name)" = tgt ] && [ "$(detail copy_rate)" = 0 ] &&
    [ "$(detail group_name)" = cg ] || fail "the module's mapping: $out"

ans ibm_svc_start_stop_flashcopy name=cg isgroup=true state=started
check '.changed == true'
expect_svc 0 'lsfcconsistgrp -delim ! cg'
[ "$(detail status)" = copying ] || fail "after the module's start: $out"
write_pattern src 0xa5 0 $((M / 2))
pattern_file "$tmp/want" 0x5a $M
read_vdisk tgt "$tmp/got"
cmp "$tmp/want" "$tmp/got" || fail "tgt is not src as it was at the flash"

ans ibm_svc_start_stop_flashcopy name=cg isgroup=true state=stopped force=true
check '.changed == true'
ans ibm_svc_manage_flashcopy name=m1 state=absent force=true
check '.changed == true'
ans ibm_svc_manage_consistgrp_flashcopy name=cg state=absent force=true
check '.changed == true'
ans ibm_svc_manage_flashcopy name=m1 state=absent
check '.changed == false'
expect_svc 0 'lsfcmap -delim !'
[ -z "$out" ] || fail "mappings left: $out"
expect_svc 0 'lsfcconsistgrp -delim !'
[ -z "$out" ] || fail "groups left: $out"

# A wrong password: the module reports the array unreachable, nothing runs.
password=wrong
ans ibm_svc_manage_consistgrp_flashcopy name=cg2 state=present
check '.unreachable == true or .failed == true'
expect_svc 0 'lsfcconsistgrp -delim !'
[ -z "$out" ] || fail "a refused login created: $out"
echo PASS
