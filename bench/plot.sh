#!/bin/sh
# SPDX-License-Identifier: MIT
#
# bench/plot.sh DIR — draw DIR/results.jsonl (from `pitcopy-bench --out DIR`)
# as PNG bar charts with gnuplot:
#
#   DIR/<name>.png    one per benchmark: its ratio beside its goal (grey); the
#                     ratio bar is green when the goal is met, red when not;
#                     the title gives the comparison (">= 0.9": the ratio
#                     must reach the grey bar; "<=": stay under it; "~=":
#                     within a factor of 2).
#   DIR/summary.png   every benchmark's ratio divided by its goal on one
#                     chart, with a line at 1.
#
# Reads only the flat fields pitcopy-bench prints on each line, with awk, so
# it needs nothing beyond gnuplot (scripts/install-deps).
set -eu

dir=${1:-bench/results}
in="$dir/results.jsonl"
if [ ! -s "$in" ]; then
    echo "plot.sh: $in is missing or empty; run pitcopy-bench --out $dir first" >&2
    exit 1
fi
if ! command -v gnuplot >/dev/null 2>&1; then
    echo "plot.sh: gnuplot is not installed (scripts/install-deps installs it)" >&2
    exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

# One row per result: name ratio goal cmp pass value baseline unit (null → NaN).
awk '
function field(key,    re, v) {
    re = "\"" key "\":(\"[^\"]*\"|[^,}]*)"
    if (!match($0, re)) return "NaN"
    v = substr($0, RSTART + length(key) + 3, RLENGTH - length(key) - 3)
    gsub(/"/, "", v)
    if (v == "null" || v == "") return "NaN"
    return v
}
{ print field("name"), field("ratio"), field("goal"), field("goal_cmp"), field("pass"),
        field("value"), field("baseline"), field("unit") }
' "$in" > "$tmp/rows"

n=0
: > "$tmp/summary"
while read -r name ratio goal cmp pass value baseline unit; do
    n=$((n + 1))
    # "lc rgb variable" takes 0xRRGGBB as a plain integer: green, red, grey
    if [ "$pass" = true ]; then color=3050327; else color=12597547; fi
    printf '"ratio" %s %s\n"goal" %s 10066329\n' "$ratio" "$color" "$goal" > "$tmp/bars"
    gnuplot <<EOF
set terminal pngcairo size 480,360 font ",10" noenhanced
set output "$dir/$name.png"
set title "$name: ratio vs goal ($cmp $goal)\nvalue $value $unit, baseline $baseline $unit"
set style fill solid 0.8 border -1
set boxwidth 0.6
set yrange [0:*]
set offsets 0.3, 0.3, graph 0.15, 0
set grid ytics
unset key
plot "$tmp/bars" using 0:2:3:xtic(1) with boxes lc rgb variable, \
     "" using 0:2:(sprintf("%.3g", \$2)) with labels offset 0,0.8
EOF
    awk -v n="$name" -v r="$ratio" -v g="$goal" \
        'BEGIN { if (g + 0 > 0 && r != "NaN") print n, r / g; else print n, "NaN" }' >> "$tmp/summary"
done < "$tmp/rows"

gnuplot <<EOF
set terminal pngcairo size 900,440 font ",10" noenhanced
set output "$dir/summary.png"
set title "pitcopy-bench: ratio / goal (\">=\" goals are met at 1 and above, \"<=\" at 1 and below)"
set style fill solid 0.8 border -1
set boxwidth 0.6
set yrange [0:*]
set offsets 0.5, 0.5, 0, 0
set xtics rotate by -35
set grid ytics
unset key
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lw 2
plot "$tmp/summary" using 0:2:xtic(1) with boxes lc rgb "#4a7fb5"
EOF

echo "plot.sh: $n charts and summary.png in $dir"
