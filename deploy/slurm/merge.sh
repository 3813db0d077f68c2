#!/usr/bin/env bash
# Joins the N shard outputs of embed-array.sh (queued by submit.sh after the array: afterany, so that it
# runs and reports what is missing even when a task failed).
#SBATCH --job-name=derm-merge
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=4:00:00
#SBATCH --output=derm-merge-%j.log
set -euo pipefail
repo="${DERM_WEBGPU_DIR:-${SLURM_SUBMIT_DIR:-$PWD}}"
out_dir="${DERM_OUT_DIR:-$repo/embeddings}"
format="${DERM_FORMAT:-parquet}"
count="${DERM_SHARDS:?set DERM_SHARDS to the number of array tasks}"
shards=()
for ((i = 0; i < count; i++)); do shards+=("$out_dir/embeddings-$i-of-$count.$format"); done
exec deno run --allow-read --allow-write --allow-env "$repo/cli/merge.ts" \
  --out "${DERM_MERGED:-$out_dir/embeddings.$format}" ${DERM_MERGE_ARGS:-} "${shards[@]}"
