#!/usr/bin/env bash
# Scores a large dataset with a Slurm job array: task i of N runs
# `pipe score --shard i/N`. No coordinator: every task lists the same input
# files and takes its own contiguous row range; each commits its part and
# manifest atomically, so a resubmitted array skips the tasks that finished.
#
#   scripts/pipe bundle pipelines/lstm.yaml /shared/models/lstm   # once, on any machine
#   sbatch --array=0-15 examples/slurm_score.sh /shared/models/lstm '/shared/records/*.parquet' /shared/scored
#
# The union of the 16 parts is what one process would write, row for row
# (part-00000-of-00016.parquet … part-00015-of-00016.parquet).
#SBATCH --job-name=pipe-score
#SBATCH --cpus-per-task=2
#SBATCH --mem=4G
#SBATCH --time=02:00:00
set -euo pipefail
MODEL="$1" INPUT="$2" OUTPUT="$3"
# One torch thread per allocated core.
export PIPE_THREADS="${SLURM_CPUS_PER_TASK:-1}"
exec pipe score "$MODEL" --input "$INPUT" --output "$OUTPUT" --id-column Id \
  --shard "${SLURM_ARRAY_TASK_ID}/${SLURM_ARRAY_TASK_COUNT}" --batch-rows 10000 --json
