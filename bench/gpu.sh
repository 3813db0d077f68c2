#!/usr/bin/env bash
# Runs `deno task bench` on a GPU machine that has no package registry.
#
#   bench/gpu.sh pack [DIR]          on a machine with registries: fill DIR (default out/gpu_pack) with
#                                    deno.xz (xz copy of the real deno binary), deno_dir/ (DENO_DIR with the
#                                    npm packages of the bench and its peers) and vulkan/ (libvulkan1 unpacked)
#   bench/gpu.sh run [DIR] [ARGS...] on the GPU machine, in the project root: unpack deno, point DENO_DIR and
#                                    LD_LIBRARY_PATH at DIR and run bench/bench.ts ARGS (--cached-only);
#                                    stdout/stderr also go to $OUT/bench.{json,txt,log} when $OUT is set
#
# DIR lives under out/ (git-ignored), so it can be carried to a lent machine as one ignored path; the
# project itself travels as the working tree. The GPU driver's own Vulkan ICD must be on that machine.
set -euo pipefail
mode=${1:-}
dir=${2:-out/gpu_pack}
[ $# -ge 2 ] && shift 2 || shift $#

real_deno() {
  # The `deno` on PATH may be a wrapper (npm's bin shim or a script): follow it to an ELF binary.
  local p
  p=$(readlink -f "$(command -v deno)")
  if head -c 4 "$p" | grep -q $'\x7fELF'; then echo "$p"; return; fi
  for c in "$(dirname "$p")/deno" "$(dirname "$p")/../lib/node_modules/deno/deno" \
    "$(npm root -g 2>/dev/null)/deno/deno"; do
    if [ -f "$c" ] && head -c 4 "$c" | grep -q $'\x7fELF'; then readlink -f "$c"; return; fi
  done
  echo "cannot find the real deno binary behind $(command -v deno)" >&2
  exit 1
}

case "$mode" in
pack)
  mkdir -p "$dir"
  bin=$(real_deno)
  echo "deno: $bin ($("$bin" --version | head -1))"
  xz -T0 -6 -c "$bin" >"$dir/deno.xz"
  # Every module and npm package the bench can load, in a DENO_DIR of its own.
  DENO_DIR="$dir/deno_dir" "$bin" cache --config deno.dev.json bench/bench.ts bench/peers_ort.ts bench/peers_tfjs.ts bench/bench_test.ts
  # ORT loads its wasm at run time from the package's dist folder: already inside deno_dir's npm cache.
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download libvulkan1 >/dev/null)
  dpkg-deb -x "$tmp"/libvulkan1_*.deb "$dir/vulkan"
  rm -rf "$tmp"
  du -sh "$dir"/* ;;
run)
  [ -f "$dir/deno.xz" ] || { echo "no $dir/deno.xz: run 'bench/gpu.sh pack $dir' first" >&2; exit 1; }
  bin="$dir/deno"
  [ -x "$bin" ] || { xz -d -c "$dir/deno.xz" >"$bin"; chmod +x "$bin"; }
  export DENO_DIR="$PWD/$dir/deno_dir" DENO_NO_UPDATE_CHECK=1
  export LD_LIBRARY_PATH="$PWD/$dir/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-$$}
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
  cmd=("$bin" run --config deno.dev.json --cached-only --allow-read --allow-write --allow-env bench/bench.ts "$@")
  if [ -n "${OUT:-}" ]; then
    "${cmd[@]}" --json --svg "$OUT/bench.svg" >"$OUT/bench.json" 2>"$OUT/bench.log"
    "$bin" eval 'const r = JSON.parse(Deno.readTextFileSync(Deno.args[0])); console.log(r.adapter)' \
      "$OUT/bench.json" 2>/dev/null || true
    tail -5 "$OUT/bench.log"
  else
    "${cmd[@]}"
  fi ;;
*)
  sed -n 2,12p "$0"
  exit 2 ;;
esac
