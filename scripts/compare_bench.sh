#!/usr/bin/env bash
# Compares two builds of the engine bench on the 1M-node graph with the
# `inference` pack:
#
#   scripts/compare_bench.sh BASE NEW [ROUNDS] [RUNS]
#
# BASE and NEW are bench executables (`cargo bench --no-run --bench engine`
# prints where it put one; copy it before building the other). Each round
# runs them in the order BASE NEW NEW BASE, each process doing RUNS runs
# (3 unless given) and reporting its best; ROUNDS is 2 unless given.
#
# Why that order: on this machine, touching fresh memory was cheap in one
# process and slow in the next, turn and turn about (system time 0.1 s,
# then 0.6-0.9 s, for the same `graphrw apply` on synth-1m), so running two
# binaries strictly in turn could hand one of them every slow turn. In
# BASE NEW NEW BASE each gets as many of each. (That was transparent huge
# pages, which graphrw and its bench turn off since ce73ad8, see
# docs/performance.md; binaries from before still take them.)
set -euo pipefail

if [ $# -lt 2 ]; then
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
base=$1
new=$2
rounds=${3:-2}
runs=${4:-3}
for bin in "$base" "$new"; do
    [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 2; }
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
for _ in $(seq "$rounds"); do
    for which in base new new base; do
        bin=$base
        [ "$which" = new ] && bin=$new
        line=$(GRAPHRW_BENCH_ONLY=inference GRAPHRW_BENCH_RUNS=$runs GRAPHRW_BENCH_SIZES=1000000 \
            "$bin" --bench 2>&1 | grep -A3 "999995 nodes" | tr -s ' ' | paste -sd' ')
        echo "$which $line" | tee -a "$log" | cut -c1-160
    done
done

python3 - "$log" <<'EOF'
import re, statistics, sys
fields = {
    "best": r"best ([0-9.]+) ms",
    "matching": r"matching ([0-9.]+) ms",
    "applying": r"applying ([0-9.]+)",
    "settling": r"dead \+ pruning ([0-9.]+)",
    "checking": r"checking ([0-9.]+)",
    # Until 2eb5c2a the bench's time included building the result as a
    # graph ("writing out"); since, it prints what encoding it takes apart.
    "setup": r"setting up and (?:writing out|ordering the result) ([0-9.]+)",
    "encoding": r"then encoding it ([0-9.]+) ms",
    "cpu": r"all threads: ([0-9]+) ms",
    "system": r"the system's ([0-9]+) ms",
}
seen = {}
for line in open(sys.argv[1]):
    which = line.split()[0]
    row = {}
    for name, pattern in fields.items():
        m = re.search(pattern, line)
        if m:
            row[name] = float(m.group(1))
    seen.setdefault(which, []).append(row)
print("\nmeans of each process's best run, ms:")
print("      " + " ".join(f"{name:>9}" for name in fields))
for which in ("base", "new"):
    rows = seen.get(which, [])
    cells = []
    for name in fields:
        values = [r[name] for r in rows if name in r]
        cells.append(f"{statistics.mean(values):9.0f}" if values else f"{'-':>9}")
    print(f"{which:5} " + " ".join(cells))
EOF
