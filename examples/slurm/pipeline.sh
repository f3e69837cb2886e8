#!/usr/bin/env bash
# Submits the whole oddcube pipeline to Slurm as dependent jobs:
#   ingest (job array) → merge dataset → train (one GPU job) → score (job array) → merge results.
# Usage: MAPS_DIR=/data/manga/maps WORK=/scratch/$USER/oddcube ./pipeline.sh [SHARDS]
# Every per-galaxy job reads its shard from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT.
# Optional: GPU_GRES (default gpu:1; empty for a CPU-only training job), SBATCH_EXTRA (more sbatch
# options for every job, e.g. "--partition=short --account=proj"), TRAIN_ARGS (extra train options),
# DEVICE / PRESET for training (default cuda / paper).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
shards="${1:-8}"
: "${MAPS_DIR:?set MAPS_DIR to the directory of MAPS files (see: oddcube fetch)}"
: "${WORK:?set WORK to a shared working directory}"
export MAPS_DIR WORK ODDCUBE="${ODDCUBE:-oddcube}" TRAIN_ARGS="${TRAIN_ARGS:-}"
mkdir -p "$WORK/logs"
last=$((shards - 1))
common=(--parsable --chdir "$WORK" --output "$WORK/logs/%x-%A_%a.out")
# shellcheck disable=SC2206
common+=(${SBATCH_EXTRA:-})
gpu=()
[ -n "${GPU_GRES-gpu:1}" ] && gpu=(--gres="${GPU_GRES-gpu:1}")
ingest=$(sbatch "${common[@]}" --array="0-$last" "$here/ingest.sbatch")
dataset=$(sbatch "${common[@]}" --dependency="afterok:$ingest" "$here/merge-dataset.sbatch")
train=$(sbatch "${common[@]}" "${gpu[@]}" --dependency="afterok:$dataset" "$here/train.sbatch")
score=$(sbatch "${common[@]}" --array="0-$last" --dependency="afterok:$train" "$here/score.sbatch")
results=$(sbatch "${common[@]}" --dependency="afterok:$score" "$here/merge-results.sbatch")
echo "submitted: ingest=$ingest dataset=$dataset train=$train score=$score results=$results"
echo "results will be in $WORK/results; then: $ODDCUBE serve --results $WORK/results --data $WORK/dataset"
