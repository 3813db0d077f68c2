#!/usr/bin/env bash
# Runs `deno task bench` on a GPU machine that has no package registry.
#
#   bench/gpu.sh pack [DIR]          on a machine with registries: fill DIR (default out/gpu_pack) with
#                                    deno.xz (xz copy of the real deno binary), deno_dir.tar.xz (a DENO_DIR
#                                    holding only the npm files the bench and its peers read, traced from a
#                                    --tiny run and checked by a second --tiny run on the pruned copy) and
#                                    libvulkan1.deb; prints the sizes against the device's 64 MiB limit
#   bench/gpu.sh run [DIR] [ARGS...] on the GPU machine, in the project root: unpack DIR, point DENO_DIR and
#                                    LD_LIBRARY_PATH there and run bench/bench.ts ARGS (--cached-only);
#                                    stdout/stderr also go to $OUT/bench.{json,log} when $OUT is set
#   bench/gpu.sh h200 [DIR]          the prepared run for a lent H200 (one call, under 10 minutes): the
#                                    adapter, R101x3/448, ResNet-50/224 and ViT-S/16/224 at batch 1, 8, 32
#                                    with the per-shape kernel table, ONNX Runtime Web and TF.js on the same
#                                    GPU, then PyTorch (bench/pytorch_peer.py) with the machine's python3;
#                                    every part has its own deadline and writes its own file under $OUT
#
# DIR lives under out/ (git-ignored), so it travels to a lent machine as one carried path beside the
# working tree: device run with carry ["out/gpu_pack"] and command "bash bench/gpu.sh h200". The GPU
# driver's own Vulkan ICD must be on that machine (NVIDIA's container mount provides it).
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

unpack() {
  # Unpacks DIR's archives once (deno, deno_dir, the Vulkan loader) outside DIR, which must stay small
  # enough to travel, and puts them on the path.
  [ -f "$dir/deno.xz" ] || { echo "no $dir/deno.xz: run 'bench/gpu.sh pack $dir' first" >&2; exit 1; }
  local u=${GPU_SH_UNPACK:-/tmp/derm-webgpu-gpu}
  mkdir -p "$u"
  [ -x "$u/deno" ] || { xz -d -c "$dir/deno.xz" >"$u/deno"; chmod +x "$u/deno"; }
  [ -d "$u/deno_dir" ] || tar -xJf "$dir/deno_dir.tar.xz" -C "$u"
  [ -d "$u/vulkan" ] || dpkg-deb -x "$dir"/libvulkan1*.deb "$u/vulkan"
  bin="$u/deno"
  export DENO_DIR="$u/deno_dir" DENO_NO_UPDATE_CHECK=1
  export LD_LIBRARY_PATH="$u/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp/xdg-$$}
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
  # NVIDIA's container runtime mounts its ICD outside the loader's default search path.
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  if [ -z "${VK_DRIVER_FILES:-}" ] && [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
}

# The bench's command line (an array, so that `timeout` can run it: it cannot run a shell function).
bench_cmd() { cmd=("$bin" run --config deno.dev.json --cached-only --allow-read --allow-write --allow-env bench/bench.ts); }

case "$mode" in
pack)
  mkdir -p "$dir"
  bin=$(real_deno)
  echo "deno: $bin ($("$bin" --version | head -1))"
  xz -T0 -9 -c "$bin" >"$dir/deno.xz"
  # Every module and npm package the bench can load, in a DENO_DIR of its own, then only the files a
  # --tiny run with both peers reads (atime after a marker; the packages ship many unused builds).
  work=$(mktemp -d)
  DENO_DIR="$work/full" "$bin" cache --config deno.dev.json bench/bench.ts bench/peers_ort.ts bench/peers_tfjs.ts
  sleep 1 && touch "$work/marker" && sleep 1
  DENO_DIR="$work/full" "$bin" run --config deno.dev.json --cached-only --allow-read --allow-write --allow-env \
    bench/bench.ts --tiny --json-out "$work/full.json" >/dev/null
  (cd "$work/full" && find npm -type f \( -anewer ../marker -o -name registry.json -o -name package.json \)) >"$work/files"
  mkdir -p "$work/pruned/deno_dir"
  (cd "$work/full" && tar -cf - -T "$work/files") | tar -xf - -C "$work/pruned/deno_dir"
  echo "checking the pruned DENO_DIR ($(wc -l <"$work/files") files) with a second --tiny run"
  DENO_DIR="$work/pruned/deno_dir" "$bin" run --config deno.dev.json --cached-only --allow-read --allow-write \
    --allow-env bench/bench.ts --tiny --json-out "$work/pruned.json" >/dev/null
  grep -q '"ort"' "$work/pruned.json" || { echo "the pruned run has no ORT figures" >&2; exit 1; }
  rm -f "$work/pruned/deno_dir"/*cache*
  tar -cf - -C "$work/pruned" deno_dir | xz -T0 -9 >"$dir/deno_dir.tar.xz"
  (cd "$work" && apt-get download libvulkan1 >/dev/null 2>&1) && mv "$work"/libvulkan1_*.deb "$dir/"
  rm -rf "$work"
  du -b "$dir"/* | sort -n
  tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
  packed=$(du -cb "$dir"/deno.xz "$dir"/deno_dir.tar.xz "$dir"/*.deb | tail -1 | cut -f1)
  echo "travels: working tree $tree B + pack $packed B = $((tree + packed)) B (limit $((64 << 20)) B)"
  [ $((tree + packed)) -lt $((64 << 20)) ] || echo "warning: over the device's 64 MiB; prune testdata/ from the checkout for the run" >&2 ;;
run)
  unpack
  bench_cmd
  if [ -n "${OUT:-}" ]; then
    "${cmd[@]}" "$@" --json-out "$OUT/bench.json" --svg "$OUT/bench.svg" >"$OUT/bench.txt" 2>"$OUT/bench.log" || true
    tail -5 "$OUT/bench.log"
  else
    "${cmd[@]}" "$@"
  fi ;;
h200)
  unpack
  bench_cmd
  out=${OUT:-out/h200}
  mkdir -p "$out"
  # GPU_SH_SMOKE=1: the same run with the tiny models at 64 and short deadlines, to check this script on a
  # CPU adapter before a lent run (the figures mean nothing there).
  if [ -n "${GPU_SH_SMOKE:-}" ]; then
    r101=(--model tiny-derm --size 64) r50=(--model tiny-resnet --size 64) vit=(--model tiny-vit --size 64)
    batches=1,2 kbatch=(--kernel-size 64 --kernel-batch 2) scale=2 r101_shapes=()
    variant_models=tiny-derm@64,tiny-resnet@64,tiny-vit@64
    torch_args=(--size 64 --batches 1,2 --trials 1 --repeats 1)
  else
    r101=(--model r101x3 --size 448) r50=(--model resnet50 --size 224) vit=(--model vit-s16 --size 224)
    batches=1,8,32 kbatch=(--kernel-batch 32) scale=1 torch_args=()
    variant_models=r101x3@448,resnet50@224,vit-s16@224
    # At batch 32 the float64 check of every R101x3 shape would take minutes on the CPU: its kernel table
    # keeps the large convolutions (stage 3's three shapes, 92% of its MACs, and stage 1's 3x3); the
    # whole-model profile gives every shape at batch 1.
    r101_shapes=(--shapes "conv 3x3/1 28x28x768,conv 1x1/1 28x28x768 ->,conv 1x1/1 28x28x3072 ->,conv 3x3/1 112x112x192")
  fi
  {
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 || true
    "$bin" eval 'const a = await navigator.gpu?.requestAdapter({ powerPreference: "high-performance" });
      const i = a?.info;
      console.log(JSON.stringify(a ? { vendor: i.vendor, architecture: i.architecture, device: i.device,
        description: i.description, features: [...a.features] } : "no WebGPU adapter"))' 2>&1
  } >"$out/tables.txt"
  cat "$out/tables.txt"
  # Each part under its own deadline (seconds), so one slow part cannot take the others' time; tables are
  # appended to tables.txt as each part prints them (a part cut by its deadline keeps what it printed).
  # At most 8 files come back from $OUT: tables.txt, log.txt, pytorch.json, variants.json and one JSON per
  # part. Deadlines sum to about 8 minutes, inside one 10-minute command.
  part() {
    local name=$1 limit=$(($2 * scale))
    shift 2
    echo "== $name (deadline ${limit}s) ==" | tee -a "$out/tables.txt"
    timeout -k 5 "$limit" "${cmd[@]}" "$@" --json-out "$out/$name.json" --svg /tmp/"$name".svg \
      >>"$out/tables.txt" 2>>"$out/log.txt" || echo "$name: exit $? (see log.txt)" | tee -a "$out/tables.txt"
  }
  part r101x3-model 140 "${r101[@]}" --batches $batches --budget 400 --peer-timeout 60 --no-kernels
  part r101x3-kernels 90 "${r101[@]}" "${kbatch[@]}" "${r101_shapes[@]}" --budget 200 --no-model
  part resnet50 55 "${r50[@]}" --batches $batches "${kbatch[@]}" --budget 200 --peer-timeout 20 --no-profile
  part vit-s16 55 "${vit[@]}" --batches $batches "${kbatch[@]}" --budget 200 --peer-timeout 20 --no-profile
  # The per-shape variant table: every conv2d and linear variant forced on each model's distinct shapes.
  echo "== variants (deadline $((80 * scale))s) ==" | tee -a "$out/tables.txt"
  timeout -k 5 $((80 * scale)) "$bin" run --config deno.dev.json --cached-only --allow-read --allow-write \
    --allow-env --allow-sys bench/variants_bench.ts --models "$variant_models" --max-shapes 6 --budget 150 \
    --json-out "$out/variants.json" >>"$out/tables.txt" 2>>"$out/log.txt" ||
    echo "variants: exit $? (see log.txt)" | tee -a "$out/tables.txt"
  echo "== pytorch ==" | tee -a "$out/tables.txt"
  PYTHONUNBUFFERED=1 timeout -k 5 $((80 * scale)) python3 bench/pytorch_peer.py --deadline $((65 * scale)) \
    "${torch_args[@]}" --json "$out/pytorch.json" 2>>"$out/tables.txt" || echo "pytorch: exit $?"
  grep -E '^(r101x3|resnet50|vit-s16) |exit|skipped' "$out/tables.txt" | tail -30 ;;
*)
  sed -n 2,22p "$0"
  exit 2 ;;
esac
