#!/usr/bin/env bash
# Archive with compression: logcompactd (zstd, gzip) against logrotate with
# `compress` (gzip) and the `zstd -3` command, on the same generated files, in one
# run. Prints MB/s of input and the compression ratio for each (ours with zstd
# and `zstd -3`: the median of RUNS=5 alternating runs). Needs logrotate
# and zstd (installed with apt-get when run as root and missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v logrotate >/dev/null || ! command -v zstd >/dev/null; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq logrotate zstd >/dev/null; else
    echo "bench-archive: needs logrotate and zstd" >&2; exit 1; fi
fi
go build -o bin/logcompactd ./cmd/logcompactd
work=$(mktemp -d "${TMPDIR:-/tmp}/lcd-bench-archive.XXXXXX")
trap 'rm -rf "$work"' EXIT
N=${BENCH_FILES:-8}; PER=${BENCH_MIB_PER_FILE:-25}
mkdir -p "$work/src"
for i in $(seq 1 "$N"); do
  awk -v seed="$i" -v bytes=$((PER << 20)) 'BEGIN { srand(seed); n = 0
    while (n < bytes) {
      line = sprintf("2026-11-24T%02d:%02d:%02d.%06dZ level=%s req=%08x path=/api/v1/items/%d status=%d dur_ms=%d bytes=%d ua=\"client/%d.%d\"\n",
        int(rand()*24), int(rand()*60), int(rand()*60), int(rand()*1e6), (rand() < 0.9 ? "info" : "warn"),
        int(rand()*2^31), int(rand()*100000), (rand() < 0.95 ? 200 : 500), int(rand()*900), int(rand()*65536), int(rand()*9), int(rand()*20))
      printf "%s", line; n += length(line) } }' > "$work/src/app-$(printf %06d "$i").log"
done
input=$(du -cb "$work"/src/*.log | tail -1 | cut -f1)
now() { date +%s.%N; }
report() { # key seconds outbytes
  awk -v n="$1" -v s="$2" -v o="$3" -v i="$input" 'BEGIN { printf "ARCHIVE who=%s mb_s=%.1f ratio=%.2f seconds=%.2f in=%d out=%d\n", n, i/s/1e6, i/o, s, i, o }'
}
fresh() { rm -rf "$work/$1"; mkdir -p "$work/$1"; cp "$work"/src/*.log "$work/$1/"; sync; }
echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs; $N files, $((input >> 20)) MiB of generated log lines"

# ours C RATE: archives a fresh copy with `once` (compress C, max_rate RATE);
# sets secs and out.
ours() {
  local c=$1 rate=$2
  fresh "hot-$c"; rm -rf "$work/cold-$c" "$work/state-$c"; mkdir -p "$work/cold-$c"
  echo newest > "$work/hot-$c/app-999999.log"  # the active segment stays
  touch -d '2 hours ago' "$work/hot-$c"/app-0*.log
  cat > "$work/$c.yaml" <<YAML
state_dir: $work/state-$c
load: {enabled: false}
compaction: {threshold: 1000000, max_rate: $rate}
archive: {cold_dir: $work/cold-$c, max_age: 1h, compress: $c}
streams:
  - {name: app, dir: $work/hot-$c, pattern: "app-*.log"}
YAML
  local t0 t1; t0=$(now); ./bin/logcompactd --config "$work/$c.yaml" --log-level warn once; t1=$(now)
  secs=$(echo "$t1 - $t0" | bc) out=$(du -cb "$work/cold-$c"/app/* | tail -1 | cut -f1)
}
# zstd3: the `zstd -3 --rm` command over a fresh copy, then sync; sets secs and out.
zstd3() {
  fresh zs
  local t0 t1; t0=$(now); zstd -3 -q --rm "$work"/zs/*.log; sync; t1=$(now)
  secs=$(echo "$t1 - $t0" | bc) out=$(du -cb "$work"/zs/*.zst | tail -1 | cut -f1)
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Ours with zstd against `zstd -3`: each run takes about a second, so one run
# each was at the mercy of a stray flush (0.83 and 0.97 on the same code):
# RUNS runs of each, alternating, and the median of each.
runs=${RUNS:-5} ours_s=() z3_s=()
for ((i = 0; i < runs; i++)); do
  ours zstd 0; ours_s+=("$secs"); ours_out=$out
  zstd3; z3_s+=("$secs"); z3_out=$out
done
report "logcompactd-zstd-unpaced" "$(median "${ours_s[@]}")" "$ours_out"
for run in "gzip 0" "zstd 64MiB/s"; do
  set -- $run
  ours "$1" "$2"
  label="unpaced"; [ "$2" != 0 ] && label="paced"
  report "logcompactd-$1-$label" "$secs" "$out"
done

fresh lr
cat > "$work/lr.conf" <<CONF
$work/lr/*.log {
  rotate 1000
  compress
  nodelaycompress
  missingok
  size 1
}
CONF
t0=$(now); logrotate -f -s "$work/lr.state" "$work/lr.conf"; t1=$(now)
report "logrotate-gzip" "$(echo "$t1 - $t0" | bc)" "$(du -cb "$work"/lr/*.gz | tail -1 | cut -f1)"
report "zstd-3" "$(median "${z3_s[@]}")" "$z3_out"
