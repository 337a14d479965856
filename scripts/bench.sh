#!/usr/bin/env bash
# make bench: every benchmark of the project, raw output in bench/latest.txt, and
# BENCHMARKS.md regenerated from it (scripts/benchtable). Takes ~100 minutes:
# the idle-daemon measurements (BENCH_IDLE_SECONDS each, default 330), the
# soak (BENCH_SOAK, default 10m) and the single instance (BENCH_SINGLE, default
# 1h) are most of it. Run as root: the scan takes real
# leases as the daemon does, the soak mounts a tmpfs, fgbench drops the page
# cache, and bench-archive installs logrotate and zstd if missing. The S3 rows
# need versitygw on PATH (.ci/run installs it).
#
#   BENCH_IDLE_SECONDS=330 BENCH_SOAK=10m BENCH_SINGLE=1h BENCH_DISK_DIR=/var/tmp make bench
set -euo pipefail
cd "$(dirname "$0")/.."
# Where `go install` (and .ci/run) put versitygw. Without it the S3 rows would
# be skipped and BENCHMARKS.md not regenerated: said before the 40 minutes.
export PATH="$PATH:$(go env GOPATH)/bin:/usr/sbin:/sbin"
command -v versitygw >/dev/null || { echo "make bench: versitygw is not on PATH (GOBIN=\"\$(go env GOPATH)/bin\" go install github.com/versity/versitygw/cmd/versitygw@v1.8.0, as .ci/run does)" >&2; exit 1; }
mkdir -p bench
disk=${BENCH_DISK_DIR:-/var/tmp}
fs() { df -T "$1" | awk 'NR == 2 { print $2 }'; }
cpu=$(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)
os=$( (. /etc/os-release && echo "$PRETTY_NAME") 2>/dev/null || uname -s)
make -s build
{
  echo "# MACHINE os=\"$os\" kernel=$(uname -r) cpus=$(nproc) cpu=\"$cpu\" mem_gib=$(awk '/MemTotal/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo) tmp_fs=$(fs "${TMPDIR:-/tmp}") disk_fs=$(fs "$disk") go=$(go version | cut -d' ' -f3) uid=$(id -u) date=$(date -u +%F)"
  go test -run '^$' -bench 'BenchmarkScan|BenchmarkFind' -benchtime 5x -count 3 ./internal/scanner
  go test -run '^$' -bench 'BenchmarkPass100k' -benchtime 5x -count 3 ./internal/daemon
  go test -run '^$' -bench 'BenchmarkLiveSet' -benchtime 1x -count 3 ./internal/daemon
  go test -run '^$' -bench 'BenchmarkWriteJSON' -benchtime 10x -count 3 ./internal/daemon
  go test -run '^$' -bench 'BenchmarkTrackerMemory|BenchmarkObserve' -benchtime 3x -count 1 ./internal/growth
  go test -run '^$' -bench 'BenchmarkMarshal' -benchtime 20x -count 3 ./internal/growth
  go test -run '^$' -bench 'BenchmarkMergeVsCat|BenchmarkMergeMaxRate' -benchtime 5x -count 3 ./internal/compactor
  go test -run '^$' -bench 'BenchmarkPredictionVsReaction' -benchtime 1x ./internal/archiver
  ./scripts/bench-archive.sh
  ./scripts/bench-scale.sh
  go test -run '^$' -bench BenchmarkArchiveToS3 -benchtime 1x -count 3 ./internal/archiver
  go run ./scripts/fgbench -bin bin/logcompactd -dir "$disk" -size $((1 << 30))
  IDLE_SECONDS=${BENCH_IDLE_SECONDS:-330} ./scripts/bench-idle.sh 1 100000
  IDLE_SECONDS=${BENCH_IDLE_SECONDS:-330} ./scripts/bench-idle.sh 1000 100
  LCD_SOAK=${BENCH_SOAK:-10m} go test -count=1 -run '^TestSoak$' -v -timeout 0 ./cmd/logcompactd
  LCD_SINGLE=${BENCH_SINGLE:-1h} go test -count=1 -run '^TestSingleInstance$' -v -timeout 0 ./cmd/logcompactd
} 2>&1 | tee bench/latest.txt
rm -rf "${TMPDIR:-/tmp}"/lcd-bench-* "$disk"/lcd-bench-*
go run ./scripts/benchtable bench/latest.txt > BENCHMARKS.md
echo "BENCHMARKS.md regenerated from bench/latest.txt"
