#!/usr/bin/env bash
# make demo: the daemon watching a generated log directory while a synthetic
# writer goes steady -> burst -> quiet. No root needed; everything lives in a
# temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./bin/logcompactd
WRITER=./bin/demowriter
work=$(mktemp -d "${TMPDIR:-/tmp}/logcompactd-demo.XXXXXX")
daemon_pid= writer_pid=
cleanup() {
  [ -n "$writer_pid" ] && kill "$writer_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill -TERM "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir -p "$work/logs" "$work/cold"
chmod 755 "$work/logs"
cat > "$work/logcompactd.yaml" <<YAML
# Demo settings: everything a hundred times faster than production defaults.
state_dir: $work/state
scan_interval: 500ms
growth: {window: 20s, alpha: 0.3, horizon: 30s}
load: {enabled: true, interval: 1s}
compaction: {quiesce: 2s, target_size: 1MiB, min_segments: 3, growth_ref: 100KiB/s}
archive: {cold_dir: $work/cold, time_to_archive: 30s, max_hot_bytes: 6MiB, urgent_within: 10s}
streams:
  - {name: app, dir: $work/logs, pattern: "app-*.log"}
YAML

# Some history: six closed segments written an hour ago.
for i in 1 2 3 4 5 6; do
  f=$(printf "%s/logs/app-%06d.log" "$work" "$i")
  head -c 200000 < <(yes "2026-11-24T00:00:00Z level=info msg=\"old request\" n=$i") > "$f"
  touch -d '1 hour ago' "$f"
done

echo "== logcompactd demo in $work"
echo "== config:"; sed 's/^/   /' "$work/logcompactd.yaml"
$BIN --config "$work/logcompactd.yaml" check

$BIN --config "$work/logcompactd.yaml" --log-format console run 2> "$work/daemon.log" &
daemon_pid=$!
$WRITER -dir "$work/logs" -phases "steady:20s:40KB,burst:15s:600KB,quiet:25s:0" &
writer_pid=$!

shown=0
for step in $(seq 1 12); do
  sleep 5
  echo
  echo "================ t=$((step * 5))s ================"
  # What the daemon logged since the last step (its decisions as they happened).
  total=$(wc -l < "$work/daemon.log")
  if [ "$total" -gt "$shown" ]; then
    tail -n +"$((shown + 1))" "$work/daemon.log" | grep -E "merged|archived|abandoned|running|warn|error" | cut -c1-220 | tail -n 6 || true
    shown=$total
  fi
  # The plan now: stream totals, the newest segments, the actions and their reasons.
  $BIN --config "$work/logcompactd.yaml" --log-level error plan | awk '
    /^stream / || /^  hot / || /^\(/ {print; next}
    /^  SEGMENT/ {hdr=$0; n=0; next}
    /^  -> / || /^     because/ {if (hdr!="") {print hdr; for (i=(n>5?n-5:0); i<n; i++) print rows[i]; hdr=""}
                                  if (/^  -> /) a++; if (a<=4) print substr($0,1,230); else if (a==5 && /^  -> /) print "  -> … more actions (run plan to see all)"; next}
    /^  / && hdr!="" {rows[n++]=$0; next}'
done
wait "$writer_pid" 2>/dev/null || true
writer_pid=
kill -TERM "$daemon_pid"; wait "$daemon_pid" || true; daemon_pid=
echo
echo "== The daemon stopped on SIGTERM. What it merged and archived:"; ls "$work/logs" | head -20; ls "$work/cold/app" 2>/dev/null | head -20
