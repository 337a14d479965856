#!/usr/bin/env bash
# Steady-state cost of the real daemon over idle streams: builds a tree of idle
# closed segments, runs `logcompactd run` with default scan_interval (30s),
# fsnotify and the load probe on, waits for the first pass, then measures CPU
# (utime+stime from /proc/PID/stat) over IDLE_SECONDS and resident memory
# (VmRSS at the end, VmHWM = peak including the first scan).
#
#   scripts/bench-idle.sh [DIRS] [PER_DIR]       (default 1 100000)
#   IDLE_SECONDS=330 (default: covers the safety-net full scan, every 5 min at
#   scan_interval 30s)
set -euo pipefail
cd "$(dirname "$0")/.."
dirs=${1:-1} per=${2:-100000} secs=${IDLE_SECONDS:-330}
[ -x bin/logcompactd ] || make -s build
work=$(mktemp -d "${TMPDIR:-/tmp}/lcd-bench-idle.XXXXXX")
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
python3 - "$work/logs" "$dirs" "$per" <<'PY'
import os, sys, time
root, dirs, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
old = time.time() - 7200
for d in range(dirs):
    p = os.path.join(root, "d%04d" % d) if dirs > 1 else root
    os.makedirs(p, exist_ok=True)
    for i in range(per):
        f = os.path.join(p, "seg-%06d.log" % i)
        with open(f, "wb") as fh:
            fh.write(b"x" * 100 + b"\n")
        os.utime(f, (old, old))
PY
{
  echo "state_dir: $work/state"
  echo "log_level: info"
  echo "compaction: {threshold: 1000000000}   # idle streams: nothing to merge"
  echo "archive: {cold_dir: $work/cold, max_hot_bytes: 1TiB}"
  echo "streams:"
  if [ "$dirs" -gt 1 ]; then
    for ((d = 0; d < dirs; d++)); do printf '  - {name: s%04d, dir: %s/logs/d%04d, pattern: "seg-*.log"}\n' "$d" "$work" "$d"; done
  else
    echo "  - {name: s, dir: $work/logs, pattern: \"seg-*.log\"}"
  fi
} >"$work/config.yaml"
bin/logcompactd run --config "$work/config.yaml" --log-format json 2>"$work/log" &
pid=$!
until grep -q '"running"' "$work/log" 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || { cat "$work/log"; exit 1; }
  sleep 0.2
done
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
t0=$(ticks) s0=$(date +%s.%N)
sleep "$secs"
t1=$(ticks) s1=$(date +%s.%N)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status") hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
n=$((dirs * per))
awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v hz="$hz" -v rss="$rss" -v hwm="$hwm" -v n="$n" -v d="$dirs" -v p="$per" 'BEGIN {
  cpu = (t1 - t0) / hz / (s1 - s0) * 100
  printf "IDLE dirs=%d per_dir=%d seconds=%.0f cpu_pct=%.3f rss_mib=%.1f bytes_per_segment=%.0f peak_mib=%.1f\n",
    d, p, s1 - s0, cpu, rss / 1024, rss * 1024 / n, hwm / 1024 }'
