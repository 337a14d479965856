#!/usr/bin/env bash
# Cost that should follow change, not segment count, in fresh processes:
#  - `plan` and `once` over 100,000 idle segments in 1,000 dirs (nothing to do),
#    against `find DIR -printf '%s\n'` over the same tree: median wall time of
#    5 runs each, alternated, and the largest resident set (scripts/runstat);
#  - `once` archiving 1,000 tiny closed segments (past max_age, zstd), against
#    `tar --zstd -cf` of the same files + sync + rm, on fresh copies each run.
# Prints SCALE lines for scripts/benchtable. Run as root, as the daemon runs
# (leases on other users' files need CAP_LEASE).
#
#   scripts/bench-scale.sh                    (BENCH_DISK_DIR=/var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
disk=${BENCH_DISK_DIR:-/var/tmp}
[ -x bin/logcompactd ] || make -s build
go build -o bin/runstat ./scripts/runstat
work=$(mktemp -d "$disk/lcd-bench-scale.XXXXXX")
trap 'rm -rf "$work"' EXIT
dirs=1000 per=100
python3 - "$work/logs" "$dirs" "$per" <<'PY'
import os, sys, time
root, dirs, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
old = time.time() - 7200
for d in range(dirs):
    p = os.path.join(root, "d%04d" % d)
    os.makedirs(p, exist_ok=True)
    for i in range(per):
        f = os.path.join(p, "seg-%06d.log" % i)
        with open(f, "wb") as fh:
            fh.write(b"x" * 100 + b"\n")
        os.utime(f, (old, old))
PY
{
  echo "state_dir: $work/state"
  echo "load: {enabled: false}"
  echo "compaction: {threshold: 1000000000}   # idle streams: nothing to merge"
  echo "archive: {cold_dir: $work/cold, max_hot_bytes: 1TiB}"
  echo "streams:"
  for ((d = 0; d < dirs; d++)); do printf '  - {name: s%04d, dir: %s/logs/d%04d, pattern: "seg-*.log"}\n' "$d" "$work" "$d"; done
} >"$work/config.yaml"
mkdir -p "$work/cold"
sync
stat() { bin/runstat -n 5 -- "$@"; }
find_line=$(stat find "$work/logs" -printf '%s\n')
plan_line=$(stat bin/logcompactd --config "$work/config.yaml" --log-level error plan --json)
once_line=$(stat bin/logcompactd --config "$work/config.yaml" --log-level error once)
echo "SCALE what=find segments=$((dirs * per)) dirs=$dirs $find_line"
echo "SCALE what=plan segments=$((dirs * per)) dirs=$dirs $plan_line"
echo "SCALE what=once-idle segments=$((dirs * per)) dirs=$dirs $once_line"
rm -rf "$work/logs" "$work/state"

# 1,000 tiny closed segments archived, and their peer, three runs each.
n=1000
mkdir -p "$work/src"
python3 - "$work/src" "$n" <<'PY'
import os, sys, time
root, n = sys.argv[1], int(sys.argv[2])
old = time.time() - 7200
for i in range(n):
    f = os.path.join(root, "app-%06d.log" % i)
    with open(f, "w") as fh:
        for j in range(20):
            fh.write("2026-12-02T10:%02d:%02dZ level=info req=%06d seg=%d msg=\"request served\"\n" % (j % 60, i % 60, i * 20 + j, i))
    os.utime(f, (old, old))
PY
bytes=$(du -cb "$work/src" | tail -1 | cut -f1)
cat >"$work/tiny.yaml" <<YAML
state_dir: $work/tstate
load: {enabled: false}
compaction: {threshold: 1000000}
archive: {cold_dir: $work/tcold, max_age: 1h, compress: zstd}
streams:
  - {name: app, dir: $work/hot, pattern: "app-*.log"}
YAML
fresh() { rm -rf "$work/hot" "$work/tcold" "$work/tstate" "$work/tar.zst"; mkdir -p "$work/tcold"; cp -a "$work/src" "$work/hot"; echo newest >"$work/hot/app-999999.log"; sync; }
now() { date +%s.%N; }
ours=() peer=()
for r in 1 2 3; do
  fresh
  t0=$(now); bin/logcompactd --config "$work/tiny.yaml" --log-level warn once; t1=$(now)
  left=$(find "$work/hot" -name 'app-0*.log' | wc -l)
  [ "$left" = 0 ] || { echo "bench-scale: $left tiny segments left hot" >&2; exit 1; }
  ours+=("$(echo "$t1 - $t0" | bc)")
  archives=$(find "$work/tcold" -type f | wc -l)
  fresh
  t0=$(now); (cd "$work/hot" && tar --zstd -cf "$work/tar.zst" app-0*.log && sync && rm -f app-0*.log); t1=$(now)
  peer+=("$(echo "$t1 - $t0" | bc)")
done
med() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
echo "SCALE what=tiny-archive segments=$n bytes=$bytes archives=$archives seconds=$(med "${ours[@]}") peer_seconds=$(med "${peer[@]}")"
