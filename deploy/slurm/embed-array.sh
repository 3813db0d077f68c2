#!/usr/bin/env bash
# One task of a Slurm job array: task i of N embeds shard i/N into its own file on shared storage.
# Submit with submit.sh (which also queues the merge), or by hand from the repository root:
#   sbatch --array=0-7 deploy/slurm/embed-array.sh
# Settings (exported): DERM_WEIGHTS (embed --weights), DERM_INPUTS (embed's image arguments), DERM_OUT_DIR,
# DERM_FORMAT (npy, jsonl, parquet, safetensors), DERM_EMBED_ARGS (more embed options).
#SBATCH --job-name=derm-embed
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --mem=24G
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=derm-embed-%A_%a.log
set -euo pipefail
repo="${DERM_WEBGPU_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}"
weights="${DERM_WEIGHTS:?set DERM_WEIGHTS to the weights (a .safetensors file)}"
out_dir="${DERM_OUT_DIR:-$repo/embeddings}"
format="${DERM_FORMAT:-parquet}"
# The array's own numbering, from 0: --array=0-7 gives tasks 0..7 of 8 (a step or gaps would break it).
index=$((SLURM_ARRAY_TASK_ID - ${SLURM_ARRAY_TASK_MIN:-0}))
count=$((${SLURM_ARRAY_TASK_MAX:-$((SLURM_ARRAY_TASK_COUNT - 1))} - ${SLURM_ARRAY_TASK_MIN:-0} + 1))
# shellcheck disable=SC2086 # DERM_INPUTS and DERM_EMBED_ARGS are word lists
exec "$repo/deploy/embed-shard.sh" --weights "$weights" --shard "$index/$count" \
  --out "$out_dir/embeddings-$index-of-$count.$format" --quiet ${DERM_EMBED_ARGS:-} ${DERM_INPUTS:?set DERM_INPUTS to the images}
