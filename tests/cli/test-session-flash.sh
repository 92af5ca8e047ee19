#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: a session flashes two copy sets at one point in time through a consistency group; the targets' bytes are the hosts' at the flash (nbdcopy + cmp); dry run, show, history, terminate, restart.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires nbdcopy --version
requires qemu-io --version

start_serve
uri() { echo "nbd+unix:///$1?socket=$STATE/nbd.sock"; }

for v in h1 t1 h2 t2 h3; do expect 0 pc volume create $v --size 8M; done
expect 0 pc volume create small --size 4M
head -c 8M /dev/urandom >"$tmp/a.img"
head -c 8M /dev/urandom >"$tmp/b.img"
head -c 8M /dev/urandom >"$tmp/c.img"
nbdcopy "$tmp/a.img" "$(uri h1)" || fail "nbdcopy to h1"
nbdcopy "$tmp/b.img" "$(uri h2)" || fail "nbdcopy to h2"

expect 0 pc system add here --type local --json
check_json '.name == "here" and .type == "local" and .sessions == []'
expect 1 pc system add other --type ds9999
contains "$err" "type 'ds9999' is not one pitcopy drives (types: local, svc, ds8000, zos)"
expect 1 pc system add other --type svc
contains "$err" "type svc is reached by SSH (--host HOST) or by REST"
expect 1 pc system add other --type local --host somewhere
contains "$err" "takes no connection options (--host)"
expect 1 pc system add other --type local --hmc somewhere
contains "$err" "takes no connection options (--hmc)"
expect 1 pc system add other --type svc --host somewhere --user u --dscli /bin/true
contains "$err" "type svc takes --host"
contains "$err" "not --dscli"
expect 1 pc system show other
expect 1 pc session create nightly --system nosuch
contains "$err" "no system named nosuch"
expect 0 pc session create nightly --system here --description "ledger at 23:59" --json
check_json '.state == "Defined" and .status == "Inactive" and .copysets == []'
expect 2 pc session create other
contains "$err" "--system is required"

# A session without copy sets has nothing to flash.
expect 1 pc session flash nightly
contains "$err" "has no copy sets"

expect 0 pc session add-copyset nightly --h1 h1 --t1 t1
expect 0 pc session add-copyset nightly --h1 h2 --t1 t2 --json
check_json '[.copysets[] | .h1 + ">" + .t1] == ["h1>t1", "h2>t2"]'
expect 1 pc session add-copyset nightly --h1 h3 --t1 small
contains "$err" "differ in size"
expect 1 pc session add-copyset nightly --h1 small --t1 t1
contains "$err" "volume t1 is already in copy set h1 -> t1 of session nightly"
expect 1 pc session add-copyset nightly --h1 h1 --t1 nosuch
contains "$err" "nosuch"

# A dry run sends nothing: it prints the requests.
expect 0 pc session flash nightly --dry-run
contains "$out" 'group.create {"name":"csm-nightly"}'
contains "$out" 'group.start {"name":"csm-nightly"}'
expect 0 pc map list --json
check_json '.mappings == []'

expect 0 pc session flash nightly --json
check_json '.outcome == "ok" and .session_state.state == "Target Available" and .session_state.status == "Normal"'
check_json '.start_hold_ns >= 0 and (.commands | index("group.start {\"name\":\"csm-nightly\"}")) != null'
expect 0 pc group show csm-nightly --json
check_json '(.mappings | sort) == ["csm-nightly-1", "csm-nightly-2"] and .state == "copying"'

# After the point in time the hosts change; the targets do not.
nbdcopy "$tmp/c.img" "$(uri h1)" || fail "nbdcopy to h1"
nbdcopy "$tmp/c.img" "$(uri h2)" || fail "nbdcopy to h2"
nbdcopy "$(uri t1)" "$tmp/t1.out" || fail "nbdcopy from t1"
nbdcopy "$(uri t2)" "$tmp/t2.out" || fail "nbdcopy from t2"
cmp "$tmp/a.img" "$tmp/t1.out" || fail "t1 is not h1 at the flash"
cmp "$tmp/b.img" "$tmp/t2.out" || fail "t2 is not h2 at the flash"

expect 0 pc session show nightly --json
check_json '.state == "Target Available" and ([.copysets[].state] == ["copying", "copying"])'
expect 0 pc session show nightly
contains "$out" "Target Available"
contains "$out" "csm-nightly-2"

# Restore: h1 and h2 read as their targets at once (one group start of the
# reverse mappings); Recovering until copied back.
expect 0 pc session restore nightly --json
check_json '.outcome == "ok" and (.commands | index("group.start {\"name\":\"csm-nightly-r\",\"restore\":true}")) != null'
nbdcopy "$(uri h1)" "$tmp/h1.out" || fail "nbdcopy from h1"
nbdcopy "$(uri h2)" "$tmp/h2.out" || fail "nbdcopy from h2"
cmp "$tmp/a.img" "$tmp/h1.out" || fail "h1 is not restored"
cmp "$tmp/b.img" "$tmp/h2.out" || fail "h2 is not restored"
expect 0 pc map wait csm-nightly-1-r --state idle_or_copied --timeout 60
expect 0 pc map wait csm-nightly-2-r --state idle_or_copied --timeout 60
expect 0 pc session show nightly --json
check_json '.state == "Target Available" and .status == "Normal" and ([.copysets[].restore_state] == ["idle_or_copied", "idle_or_copied"])'
nbdcopy "$tmp/c.img" "$(uri h1)" || fail "nbdcopy to h1"

# Flash again: a new point in time replaces the old one.
expect 0 pc session flash nightly
contains "$out" "flash done; state Target Available (Normal)"
nbdcopy "$(uri t1)" "$tmp/t1.out" || fail "nbdcopy from t1"
cmp "$tmp/c.img" "$tmp/t1.out" || fail "t1 is not h1 at the second flash"

# Background copy to completion.
expect 0 pc session initiate-background-copy nightly --copy-rate 150
expect 0 pc map wait csm-nightly-1 --state idle_or_copied --timeout 60
expect 0 pc map wait csm-nightly-2 --state idle_or_copied --timeout 60
expect 0 pc session show nightly --json
check_json '[.copysets[].progress] == [100, 100]'

# Start: an incremental refresh; only the grains written since are copied.
qemu-io -f raw -c "write -P 0x5a 1M 64k" "$(uri h1)" >/dev/null || fail "qemu-io write to h1"
expect 0 pc map show csm-nightly-1 --json
check_json '.incremental == true and .grains_changed == 1'
expect 0 pc session start nightly --json
check_json '.outcome == "ok" and .session_state.state == "Target Available"'
expect 0 pc map wait csm-nightly-1 --state idle_or_copied --timeout 60
nbdcopy "$(uri h1)" "$tmp/h1.out" || fail "nbdcopy from h1"
nbdcopy "$(uri t1)" "$tmp/t1.out" || fail "nbdcopy from t1"
cmp "$tmp/h1.out" "$tmp/t1.out" || fail "t1 is not h1 after the incremental start"

# The catalog outlives the daemon.
stop_serve
start_serve
expect 0 pc session list --json
check_json '.sessions[0].name == "nightly" and .sessions[0].state == "Target Available" and .sessions[0].description == "ledger at 23:59"'
expect 0 pc session history nightly --json
check_json '[.entries[] | select(.kind == "action") | .action + ":" + .outcome] == ["flash:ok", "restore:ok", "flash:ok", "background_copy:ok", "start:ok"]'
expect 0 pc session history nightly
contains "$out" "initiate-background-copy"

# Terminate: the mappings and the group go, the session stays, Defined.
expect 0 pc session terminate nightly --dry-run
contains "$out" 'map.delete {"force":true,"name":"csm-nightly-1"}'
expect 0 pc session terminate nightly --json
check_json '.session_state.state == "Defined" and .session_state.status == "Inactive"'
expect 0 pc map list --json
check_json '.mappings == []'
expect 1 pc group show csm-nightly
expect 1 pc system remove here
contains "$err" "used by session nightly"
expect 0 pc session delete nightly
expect 1 pc session show nightly
contains "$err" "no session named nightly"
# Its history stays.
expect 0 pc session history nightly --json
check_json '(.entries | length) >= 5'
expect 0 pc system remove here
stop_serve
echo "ok"
