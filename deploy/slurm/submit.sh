#!/usr/bin/env bash
# Queues an N-task embed array and the merge after it:
#   DERM_INPUTS="--list /shared/isic2024/labels.csv" DERM_OUT_DIR=/shared/emb deploy/slurm/submit.sh 8
set -euo pipefail
n="${1:?usage: submit.sh N (tasks)}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export DERM_WEBGPU_DIR="${DERM_WEBGPU_DIR:-$(cd "$here/../.." && pwd)}"
export DERM_SHARDS="$n"
job=$(sbatch --parsable --export=ALL --array="0-$((n - 1))" "$here/embed-array.sh")
sbatch --parsable --export=ALL --dependency="afterany:${job%%;*}" "$here/merge.sh"
