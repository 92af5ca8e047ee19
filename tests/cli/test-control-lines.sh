#!/bin/bash
# SPDX-License-Identifier: MIT
# Description: many short control lines sent at once are each handled in time that does not grow with what else sits in the buffer.
#
# The control connection reads up to CTL_LINE_MAX (64 KiB) at a time.  It
# used to move what was left of the buffer to its front after every line, so
# a buffer of short lines cost its length squared: 16 MiB of empty lines kept
# the daemon busy 6 s (2 minutes under ASan; the fuzzer found it as its
# slowest inputs), where reading them takes a tenth of a second.
. "$(dirname "$0")/lib.sh"
requires perl -MIO::Socket::UNIX -e 1

start_serve

# Send all of stdin on one connection, then print the first reply line.
first_reply() {
    perl -MIO::Socket::UNIX -e '
        alarm 20;
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
        local $/; my $all = <STDIN>;
        if (fork() == 0) { print $s $all; exit 0; }
        $/ = "\n"; my $r = <$s>; defined $r or die "no reply"; print $r;' "$STATE/control.sock"
}

# 16 MiB of empty lines (ignored, P1), then a request: answered at once.
start=$(date +%s.%N)
reply=$( { head -c $((16 << 20)) /dev/zero | tr '\0' '\n'; echo '{"id":7,"method":"status"}'; } |
         first_reply) || fail "no reply after 16 MiB of empty lines"
ms=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%d", (b - a) * 1000 }')
echo "16 MiB of empty lines, then a request: answered in $ms ms"
echo "$reply" | grep -q '"id":7' || fail "unexpected reply: $reply"
[ "$ms" -le 3000 ] || fail "16 MiB of empty lines took $ms ms (quadratic again?)"

# 100000 short requests in one go: one reply each.
start=$(date +%s)
n=$(perl -MIO::Socket::UNIX -e '
        alarm 60;
        my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
        if (fork() == 0) { print $s "{}\n" x 100000; shutdown($s, 1); exit 0; }
        my $n = 0; while (<$s>) { $n++; } print "$n\n";' "$STATE/control.sock")
secs=$(( $(date +%s) - start ))
[ "$n" = 100000 ] || fail "$n replies to 100000 requests"
[ "$secs" -le 30 ] || fail "100000 short requests took $secs s"
stop_serve
exit 0
