#!/usr/bin/env bash
# One shard of a sharded embed run, as a Kubernetes Indexed Job pod or a Slurm array task runs it:
#   deploy/embed-shard.sh --shard I/N --out OUT [embed options] IMAGES...
# Always resumes (a replaced pod or a requeued task continues where the last one was killed). Exit code
# 1 with OUT written means some images failed (listed in OUT.errors.jsonl) but the shard is done: that is
# success here, so that the scheduler does not rerun a finished shard; deno task merge reports them.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=""
prev=""
for arg in "$@"; do
  if [ "$prev" = "--out" ]; then out="$arg"; fi
  prev="$arg"
done
if [ -z "$out" ]; then
  echo "embed-shard: --out is required" >&2
  exit 2
fi
mkdir -p "$(dirname "$out")"
mkdir -p -m 700 "${XDG_RUNTIME_DIR:=/tmp/xdg-$(id -u)}" && export XDG_RUNTIME_DIR
deno run --allow-read --allow-write --allow-env --allow-net "$here/cli/embed.ts" --resume "$@"
rc=$?
if [ "$rc" -eq 1 ] && [ -e "$out" ] && [ ! -e "$out.commits" ]; then
  echo "embed-shard: $out is complete; $(wc -l < "$out.errors.jsonl" 2>/dev/null || echo 0) image(s) failed" >&2
  exit 0
fi
exit "$rc"
