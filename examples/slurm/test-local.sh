#!/usr/bin/env bash
# End-to-end test of the Slurm examples on a real single-node cluster (local-cluster.sh): runs
# pipeline.sh with 3 shards on a small simulated survey, waits for the dependent jobs, and checks
# that the merged dataset equals an unsharded ingest and that the merged results are complete.
# Usage (root): examples/slurm/test-local.sh PATH/TO/oddcube
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="$(realpath "${1:?usage: test-local.sh PATH/TO/oddcube}")"
work="$(mktemp -d /tmp/oddcube-slurm-XXXXXX)"
was_running=0
pgrep -x slurmctld >/dev/null && was_running=1
"$here/local-cluster.sh" start >/dev/null
# Leave a cluster that was already running alone; stop the one started here.
[ "$was_running" -eq 1 ] || trap '"$here/local-cluster.sh" stop' EXIT
"$bin" --quiet simulate --out "$work/maps" --galaxies 24 --seed 5 --anomaly-fraction 0.2

MAPS_DIR="$work/maps" WORK="$work/run" ODDCUBE="$bin" GPU_GRES="" DEVICE=cpu PRESET=cpu \
  TRAIN_ARGS="--epochs 1" SBATCH_EXTRA="--cpus-per-task=1 --mem=2G --time=00:20:00" \
  "$here/pipeline.sh" 3

deadline=$((SECONDS + 900))
while squeue -h -o '%i' | grep -q .; do
  if [ "$SECONDS" -gt "$deadline" ]; then
    echo "FAIL: Slurm jobs still queued after 15 minutes" >&2
    squeue >&2
    exit 1
  fi
  sleep 3
done

fail=0
for f in "$work"/run/logs/*.out; do
  if grep -qiE '^error|panicked' "$f"; then
    echo "FAIL: errors in $f:" >&2
    cat "$f" >&2
    fail=1
  fi
done
for path in dataset/manifest.json model/config.toml results/manifest.json results/catalog.parquet \
  dataset-parts/part-2-of-3/manifest.json results-parts/part-2-of-3/manifest.json; do
  [ -e "$work/run/$path" ] || { echo "FAIL: $path missing" >&2; fail=1; }
done
[ "$fail" -eq 0 ] || { ls -R "$work/run" >&2; exit 1; }

"$bin" --quiet ingest "$work/maps" --out "$work/unsharded"
for f in cubes.safetensors galaxies.csv galaxies.parquet; do
  cmp -s "$work/unsharded/$f" "$work/run/dataset/$f" || { echo "FAIL: $f differs from the unsharded ingest" >&2; exit 1; }
done
rows=$(($(wc -l < "$work/run/results/catalog.csv") - 1))
[ "$rows" -eq 24 ] || { echo "FAIL: merged catalogue has $rows rows, expected 24" >&2; exit 1; }
echo "slurm: 5 dependent jobs (2 arrays of 3) ran; merged dataset equals unsharded ingest; catalogue has $rows galaxies"
rm -rf "$work"
