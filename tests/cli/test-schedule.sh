#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: schedules fired by pitcopy serve on a test clock: a 23:59 flash with its hooks, next and last run, a busy session skipped, missed runs run or skipped across a restart, print-crontab.
. "$(dirname "$0")/lib.sh"
requires jq --version
export TZ=UTC

# Poll (5 s at most) until `schedule show NAME --json` satisfies FILTER.
wait_schedule() {
    for _ in $(seq 50); do
        out=$(pc schedule show "$1" --json)
        echo "$out" | jq -e "$2" >/dev/null && return 0
        sleep 0.1
    done
    echo "$out"
    fail "schedule $1 never satisfied $2"
}

PITCOPY_TEST_CLOCK=2024-05-01T12:00:00 start_serve
expect 0 pc system clock --json
check_json '.test_clock == true and (.now | startswith("2024-05-01T12:00"))'
expect 0 pc volume create ledger --size 4M
expect 0 pc volume create checkpoint --size 4M
expect 0 pc system add here --type local
expect 0 pc session create nightly --system here
expect 0 pc session add-copyset nightly --h1 ledger --t1 checkpoint
expect 0 pc session set nightly --pre-flash "echo quiesce >>$tmp/hooks" --post-flash "echo thaw >>$tmp/hooks"

expect 0 pc schedule add nightly-flash --session nightly --action flash --cron "59 23 * * *" --json
check_json '.next_run == "2024-05-01T23:59:00" and .last_run == null and .missed == "run"'
expect 1 pc schedule add bad --session nightly --action flash --cron "59 23 * *"
contains "$err" "has four fields"
expect 1 pc schedule add bad --session nightly --action flash --cron "61 23 * * *"
contains "$err" "minute field '61'"
expect 1 pc schedule add bad --session nightly --action explode --cron "* * * * *"
contains "$err" "not a session action"
expect 1 pc schedule add bad --session nosuch --action flash --cron "* * * * *"
contains "$err" "no session named nosuch"
expect 2 pc schedule add bad --session nightly --action flash --cron "* * * * *" --missed maybe
expect 1 pc session delete nightly
contains "$err" "has schedule nightly-flash"

# Ten seconds early: nothing.
expect 0 pc system clock --set 2024-05-01T23:58:50
sleep 0.5
expect 0 pc schedule show nightly-flash --json
check_json '.last_run == null'
[ ! -e "$tmp/hooks" ] || fail "a hook ran before 23:59"

# 23:59: the flash runs, hooks and all.
expect 0 pc system clock --set 2024-05-01T23:59:00
wait_schedule nightly-flash '.last_outcome == "ok"'
check_json '.next_run == "2024-05-02T23:59:00" and (.last_run | startswith("2024-05-01T23:59"))'
[ "$(cat "$tmp/hooks")" = "quiesce
thaw" ] || fail "hooks: $(cat "$tmp/hooks")"
expect 0 pc session show nightly --json
check_json '.state == "Target Available" and .last_action == "flash"'
expect 0 pc session history nightly --json
check_json '[.entries[] | select(.kind == "action") | .origin] == ["schedule nightly-flash"]'
check_json '[.entries[] | select(.kind == "hook") | .origin] == ["schedule nightly-flash", "schedule nightly-flash"]'
expect 0 pc schedule list
contains "$out" "NEXT RUN"
contains "$out" "2024-05-02T23:59:00"

# Busy at the next 23:59 (a CLI flash still in its pre-flash hook): skipped, not queued.
expect 0 pc session set nightly --pre-flash "sleep 1.5"
expect 0 pc system clock --set 2024-05-02T23:58:58
pc session flash nightly >"$tmp/bg.out" 2>&1 &
bg=$!
sleep 0.4
expect 0 pc system clock --set 2024-05-02T23:59:00
wait_schedule nightly-flash '.last_outcome == "skipped"'
check_json '(.last_message | test("busy")) and .next_run == "2024-05-03T23:59:00"'
wait "$bg" || fail "the CLI flash failed: $(cat "$tmp/bg.out")"
expect 0 pc session set nightly --pre-flash ""

# Missed runs: one schedule runs it at start-up, the other skips it.
expect 0 pc schedule add early --session nightly --action flash --cron "0 1 * * *" --missed run --json
check_json '.next_run == "2024-05-03T01:00:00"'
expect 0 pc schedule add later --session nightly --action flash --cron "0 2 * * *" --missed skip
flashes() { pc session history nightly --json | jq '[.entries[] | select(.kind == "action" and .action == "flash" and .outcome == "ok")] | length'; }
before=$(flashes)
stop_serve
PITCOPY_TEST_CLOCK=2024-05-03T06:00:00 start_serve
wait_schedule early '.last_outcome == "ok"'
check_json '(.last_message | test("missed run")) and .next_run == "2024-05-04T01:00:00"'
wait_schedule later '.last_outcome == "skipped"'
check_json '(.last_message | test("missed run at 2024-05-03T02:00:00")) and .next_run == "2024-05-04T02:00:00"'
expect 0 pc schedule show nightly-flash --json
check_json '.next_run == "2024-05-03T23:59:00"'
expect 0 pc session history nightly --json
check_json '[.entries[] | select(.kind == "action" and (.origin | test("missed run at 2024-05-03T01:00:00"))) | .outcome] == ["ok"]'
check_json '[.entries[] | select(.kind == "schedule" and .outcome == "skipped") | .origin] | index("later") != null'
[ "$(flashes)" = $((before + 1)) ] || fail "expected one flash from the missed run (before: $before, now: $(flashes))"

# print-crontab: lines for cron that run this pitcopy against this state directory.
expect 0 pc schedule print-crontab
contains "$out" "59 23 * * * '$PITCOPY' --state-dir '$STATE' session flash nightly   # schedule nightly-flash"
contains "$out" "0 2 * * * '$PITCOPY'"
expect 0 pc schedule print-crontab --json
check_json '(.crontab | length) == 3'

# The test clock is for tests: a normal daemon refuses to set it.
expect 0 pc schedule remove early
expect 1 pc schedule show early
stop_serve
start_serve
expect 1 pc system clock --set 2024-05-03T06:00:00
contains "$err" "PITCOPY_TEST_CLOCK"
stop_serve
echo ok
