#!/usr/bin/env bash
# make bench: the benchmarks recorded in BENCHMARKS.md. Output goes to stdout and
# to bench/latest.txt. Run as root for the scan benchmarks to take real leases
# (as the daemon does); as another user the lease check falls back to /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench
{
  echo "# $(date -u +%FT%TZ) $(uname -srm), $(nproc) CPUs, $(go version | cut -d' ' -f3), uid $(id -u)"
  go test -run '^$' -bench 'BenchmarkScan|BenchmarkFind' -benchtime 5x -count 3 ./internal/scanner
  go test -run '^$' -bench 'BenchmarkTrackerMemory|BenchmarkObserve' -benchtime 3x -count 1 ./internal/growth
  go test -run '^$' -bench 'BenchmarkPass100k' -benchtime 5x ./internal/daemon
  go test -run '^$' -bench 'BenchmarkMergeVsCat|BenchmarkMergeMaxRate' -benchtime 5x -count 3 ./internal/compactor
  go test -run '^$' -bench 'BenchmarkPredictionVsReaction' -benchtime 1x ./internal/archiver
  ./scripts/bench-archive.sh
} 2>&1 | tee bench/latest.txt
rm -rf "${TMPDIR:-/tmp}"/lcd-bench-*
