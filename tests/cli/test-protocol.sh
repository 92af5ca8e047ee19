#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: the control socket answers bad JSON, bad envelopes, bad params and overlong lines with an error line, and keeps serving.
. "$(dirname "$0")/lib.sh"
requires jq --version
requires perl -MIO::Socket::UNIX -e 1

# Send each line of stdin on one connection, print each reply line.
talk() {
    perl -MIO::Socket::UNIX -e '
        alarm 20;
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
        while (my $l = <STDIN>) {
            print $s $l;
            next if $l =~ /^\s*$/;
            my $r = <$s>;
            defined $r or die "no reply to: $l";
            print $r;
        }' "$STATE/control.sock"
}

start_serve
expect 0 pc volume create v --size 4M

replies=$(cat <<'REQ' | talk
this is not json
{"id":1,"method":"volume.list"}
[1,2,3]
{"id":"x","method":"status"}
{"id":2,"method":"no.such"}
{"id":3,"method":"volume.create","params":{"name":"w","size":"4M"}}
{"id":4,"method":"volume.create","params":{"name":"w","size":-4096}}
{"id":5,"method":"volume.create","params":{"name":"w"}}
{"id":6,"method":"volume.create","params":{"name":"../etc","size":4096}}
{"id":7,"method":"volume.create","params":{"name":"w","size":4096,"file":"relative.img"}}
{"id":8,"method":"volume.show","params":{"name":"v","extra":1}}
{"id":9,"method":"map.create","params":{"source":"v","target":"v","copy_rate":151}}
{"id":10,"method":"map.wait","params":{"name":"m","state":"done"}}
{"id":11,"method":"volume.show","params":[]}
{"id":12,"method":"volume.show","params":{"name":"v"},"bogus":true}
{"id":13,"method":"status","id":14}
{"id":15,"method":"volume.show","params":{"name":"v\u0000x"}}

{"id":16,"method":"volume.show","params":{"name":"v"}}
REQ
)
echo "$replies" | jq -e -s '
    length == 18 and
    (.[0] | .id == null and .error.code == -74 and (.error.message | test("not valid JSON"))) and
    (.[1] | .id == 1 and .result.volumes[0].name == "v") and
    (.[2] | .error.code == -22 and (.error.message | test("JSON object"))) and
    (.[3] | .id == null and .error.code == -22) and
    (.[4] | .id == 2 and .error.code == -38 and (.error.message | test("unknown method"))) and
    (.[5] | .id == 3 and .error.code == -22 and (.error.message | test("parameter .size. must be an integer"))) and
    (.[6] | .id == 4 and .error.code == -22) and
    (.[7] | .id == 5 and (.error.message | test("parameter .size. is required"))) and
    (.[8] | .id == 6 and (.error.message | test("parameter .name."))) and
    (.[9] | .id == 7 and (.error.message | test("absolute path"))) and
    (.[10] | .id == 8 and (.error.message | test("unknown parameter .extra."))) and
    (.[11] | .id == 9 and (.error.message | test("copy_rate"))) and
    (.[12] | .id == 10 and (.error.message | test("mapping state"))) and
    (.[13] | .id == 11 and (.error.message | test("params must be an object"))) and
    (.[14] | .id == 12 and (.error.message | test("unknown request field .bogus."))) and
    (.[15] | .id == null and .error.code == -74 and (.error.message | test("duplicate"))) and
    (.[16] | .id == null and .error.code == -74) and
    (.[17] | .id == 16 and .result.name == "v")
' >/dev/null || { echo "$replies"; fail "unexpected replies"; }
# Only the first error of a connection is logged.
[ "$(grep -c "control: bad request" "$tmp/serve.log")" = 1 ] || fail "bad requests not logged once"

# A line over 64 KiB: an error, the rest of it dropped, the next line served.
replies=$( { printf '{"id":1,"method":"status","params":{"x":"%s"}}\n' "$(head -c 70000 /dev/zero | tr '\0' a)"
             echo '{"id":2,"method":"volume.list"}'; } | talk)
echo "$replies" | jq -e -s 'length == 2 and .[0].error.code == -7 and .[1].id == 2' >/dev/null ||
    { echo "$replies" | cut -c1-200; fail "overlong line not handled"; }

# Deep nesting and junk bytes do not crash it.
replies=$( { printf '%s\n' "$(head -c 5000 /dev/zero | tr '\0' '[')"
             printf '\xff\xfe{"id":1}\n'
             echo '{"id":3,"method":"status"}'; } | talk)
echo "$replies" | jq -e -s 'length == 3 and .[0].error != null and .[1].error != null and .[2].result.pid > 0' \
    >/dev/null || { echo "$replies" | cut -c1-200; fail "junk not handled"; }

# A client that hangs up mid-request, or mid-wait, leaves the daemon serving.
expect 0 pc volume create w --size 4M
expect 0 pc map create v w --name m --copy-rate 0
expect 0 pc map start m
printf '{"id":1,"method":"map.wait","params":{"name":"m","state":"stopped"}}\n' |
    timeout 1 perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die; print $s scalar <STDIN>; sleep 0.3; exit 0;' \
        "$STATE/control.sock"
printf '{"id":1,"method":"volume.li' | perl -MIO::Socket::UNIX -e '
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die; local $/; print $s <STDIN>; exit 0;' \
        "$STATE/control.sock"
expect 0 pc status --json
check_json '.mappings == 1'

# At most 64 connections at once: one more is told so and closed; the others still work.
# (First let the connections above finish: the daemon notices a hang-up within 250 ms.)
for _ in $(seq 50); do
    [ "$(pc status --json | jq .control_connections)" = 1 ] && break
    sleep 0.1
done
replies=$(perl -MIO::Socket::UNIX -e '
    alarm 10;
    my @s;
    for my $i (1..64) { push @s, IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect $i: $!"; }
    select(undef, undef, undef, 0.3);
    my $x = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect 65: $!";
    print scalar <$x>;
    my $f = $s[0]; print $f "{\"id\":9,\"method\":\"status\"}\n"; print scalar <$f>;' "$STATE/control.sock")
echo "$replies" | jq -e -s 'length == 2 and .[0].error.code == -11 and .[1].id == 9 and .[1].result.control_connections == 64' \
    >/dev/null || { echo "$replies"; fail "connection limit not enforced"; }
expect 0 pc status

# A wait blocks only its own connection.
"$PITCOPY" --state-dir "$STATE" map wait m --state stopped --timeout 20 >"$tmp/wait.out" 2>&1 &
waiter=$!
sleep 0.5
expect 0 pc map show m --json
check_json '.state == "copying"'
expect 0 pc map stop m
wait "$waiter" || { cat "$tmp/wait.out"; fail "map wait failed"; }
grep -q "mapping m is stopped" "$tmp/wait.out" || fail "map wait did not see the stop"

# SIGTERM while a wait is in progress: the daemon still stops promptly.
expect 0 pc map start m
"$PITCOPY" --state-dir "$STATE" map wait m --state stopped >"$tmp/wait.out" 2>&1 &
waiter=$!
sleep 0.3
start=$(date +%s)
stop_serve
[ $(( $(date +%s) - start )) -le 5 ] || fail "stopping took more than 5 s with a wait in progress"
rc=0; wait "$waiter" || rc=$?
[ "$rc" != 0 ] || fail "the wait succeeded although the daemon stopped"
exit 0
