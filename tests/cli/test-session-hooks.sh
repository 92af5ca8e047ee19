#!/bin/bash
# Description: quiesce hooks around a session flash: a failing or hung pre-flash hook aborts before anything is flashed; the post-flash hook runs after a failed flash; the freeze and every hook are in the history.
# SPDX-License-Identifier: MIT
. "$(dirname "$0")/lib.sh"
requires jq --version

start_serve
expect 0 pc volume create db --size 4M
expect 0 pc volume create db-copy --size 4M
expect 0 pc system add here --type local
expect 0 pc session create nightly --system here
expect 0 pc session add-copyset nightly --h1 db --t1 db-copy
log="$tmp/hooks.log"

# Both hooks work: quiesce, flash, thaw, in that order; the freeze is reported.
expect 0 pc session set nightly --pre-flash "echo pre \$PITCOPY_SESSION \$PITCOPY_HOOK >>$log; sleep 0.2" \
    --post-flash "echo post \$PITCOPY_FLASH_OK >>$log" --hook-timeout 5
expect 0 pc session flash nightly --json
check_json '.outcome == "ok" and .hooks.pre_flash.outcome == "ok" and .hooks.post_flash.outcome == "ok"'
check_json '.freeze_ms > 0 and .freeze_ms < 5000'
[ "$(cat "$log")" = "pre nightly pre-flash
post yes" ] || fail "hooks ran wrong: $(cat "$log")"
expect 0 pc session flash nightly
contains "$out" "freeze (pre-flash hook end to post-flash hook start)"
expect 0 pc map show csm-nightly-1 --json
started=$(echo "$out" | jq -r .started_at)

# A failing pre-flash hook: exit 1, nothing flashed, no post-flash hook.
: >"$log"
expect 0 pc session set nightly --pre-flash "echo cannot quiesce >&2; exit 3"
expect 1 pc session flash nightly
contains "$err" "pre-flash hook 'echo cannot quiesce >&2; exit 3' exited with status 3"
contains "$err" "output: cannot quiesce"
contains "$err" "nothing was flashed"
[ ! -s "$log" ] || fail "the post-flash hook ran after a failed pre-flash hook: $(cat "$log")"
expect 0 pc map show csm-nightly-1 --json
check_json ".started_at == \"$started\""
expect 0 pc session show nightly --json
check_json '.state == "Target Available"'

# A hung pre-flash hook is killed at the timeout, its whole process group too.
expect 0 pc session set nightly --pre-flash "sleep 300 & echo \$! >$tmp/child.pid; sleep 300" --hook-timeout 1
t0=$(date +%s.%N)
expect 1 pc session flash nightly
secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
contains "$err" "did not finish within 1 s and was killed"
awk -v s="$secs" 'BEGIN { exit !(s < 10) }' || fail "the hung hook held the flash for $secs s"
# Gone, or a zombie waiting for whoever reaps orphans here.
child=$(cat "$tmp/child.pid")
for _ in $(seq 20); do
    case "$(ps -o stat= -p "$child" 2>/dev/null)" in ""|Z*) break ;; esac
    sleep 0.1
done
case "$(ps -o stat= -p "$child" 2>/dev/null)" in ""|Z*) ;; *) fail "the hook's background child survived" ;; esac
[ ! -s "$log" ] || fail "the post-flash hook ran after a hung pre-flash hook"

# The flash fails after a good pre-flash hook: the post-flash hook still runs (told so).
expect 0 pc session set nightly --pre-flash "true" --hook-timeout 5
expect 0 pc session terminate nightly
expect 0 pc volume create other --size 4M
expect 0 pc map create other db-copy --name csm-nightly-1 --copy-rate 0
expect 1 pc session flash nightly
contains "$err" "mapping csm-nightly-1 exists but maps other -> db-copy"
[ "$(cat "$log")" = "post no" ] || fail "post-flash hook after a failed flash: '$(cat "$log")'"
expect 0 pc session show nightly --json
check_json '.state == "Suspended" and .status == "Severe"'
expect 0 pc map delete csm-nightly-1

# A failing post-flash hook fails the action, though the flash happened.
expect 0 pc session set nightly --post-flash "exit 7"
expect 1 pc session flash nightly
contains "$err" "post-flash hook 'exit 7' exited with status 7"
expect 0 pc session show nightly --json
check_json '.state == "Target Available" and .status == "Warning"'
expect 0 pc session set nightly --pre-flash "" --post-flash ""
expect 0 pc session show nightly --json
check_json '.pre_flash == null and .post_flash == null'

# Every action and hook is in the history, hooks under their action.
expect 0 pc session history nightly --json
check_json '[.entries[] | select(.kind == "hook") | .action + ":" + .outcome] ==
    ["pre-flash:ok", "post-flash:ok", "pre-flash:ok", "post-flash:ok", "pre-flash:failed",
     "pre-flash:timeout", "pre-flash:ok", "post-flash:ok", "pre-flash:ok", "post-flash:failed"]'
check_json '[.entries[] | select(.kind == "action") | .outcome] ==
    ["ok", "ok", "failed", "failed", "ok", "failed", "failed"]'
check_json '[.entries[] | select(.kind == "hook") | .parent] | all(. != null)'
check_json '.entries[0].start != null and .entries[0].end != null and .entries[0].duration_ms >= 0'
expect 0 pc session history nightly --limit 2 --json
check_json '(.entries | length) == 2'
stop_serve
echo ok
