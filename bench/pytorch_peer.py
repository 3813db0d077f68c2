#!/usr/bin/env python3
"""PyTorch on the same GPU as the WebGPU bench: ms per image of the three model families we serve.

Models (random initialisation: speed does not depend on the values; the WebGPU bench checks numerics):
  r101x3    timm resnetv2_101x3_bit (BiT-M R101x3: GroupNorm, weight-standardised convs), 448 x 448
  resnet50  torchvision resnet50 (v1.5, BatchNorm), 224 x 224
  vit-s16   timm vit_small_patch16_224 (ViT-S/16), 224 x 224
Modes:
  fp32-notf32  float32 with TF32 off in cuBLAS and cuDNN (the like-for-like comparison with fp32 WGSL)
  default      PyTorch's defaults (cuDNN convolutions may use TF32; cuBLAS matmuls do not)
  autocast-fp16  torch.autocast(dtype=float16) around the forward pass
Timing: CUDA events around R forward passes after W warm-ups, median over T trials, in inference_mode.
On a machine without CUDA it runs on the CPU (for checking the script, not for figures).

Usage: python3 bench/pytorch_peer.py [--models r101x3,resnet50,vit-s16] [--batches 1,8,32]
       [--modes fp32-notf32,default,autocast-fp16] [--trials 5] [--repeats 5] [--deadline S] [--json FILE]
"""
import argparse
import json
import statistics
import sys
import time

import torch

SIZES = {"r101x3": 448, "resnet50": 224, "vit-s16": 224}
MODES = ["fp32-notf32", "default", "autocast-fp16"]


def build(name):
    """The model in eval mode, or raise ImportError naming the missing package."""
    if name == "resnet50":
        import torchvision

        model = torchvision.models.resnet50(weights=None)
        model.fc = torch.nn.Identity()
        return model
    import timm  # r101x3 and vit-s16 come from timm

    if name == "r101x3":
        return timm.create_model("resnetv2_101x3_bit", pretrained=False, num_classes=0)
    if name == "vit-s16":
        return timm.create_model("vit_small_patch16_224", pretrained=False, num_classes=0)
    raise ValueError(f"unknown model {name!r}: expected one of {', '.join(SIZES)}")


def set_mode(mode):
    # PyTorch's defaults since 1.12: cuBLAS TF32 off, cuDNN TF32 on.
    tf32 = mode != "fp32-notf32"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = True


def time_forward(model, x, mode, trials, repeats, device):
    autocast = torch.autocast(device_type=device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)

    def forward():
        if mode == "autocast-fp16":
            with autocast:
                return model(x)
        return model(x)

    with torch.inference_mode():
        out = forward()
        for _ in range(2):
            out = forward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        samples = []
        for _ in range(trials):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                for _ in range(repeats):
                    out = forward()
                end.record()
                torch.cuda.synchronize()
                samples.append(start.elapsed_time(end) / repeats)
            else:
                t0 = time.perf_counter()
                for _ in range(repeats):
                    out = forward()
                samples.append((time.perf_counter() - t0) * 1000 / repeats)
    finite = bool(torch.isfinite(out.float()).all())
    return statistics.median(samples), list(out.shape), finite


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="r101x3,resnet50,vit-s16")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=0, help="override every model's input size (0: its own)")
    parser.add_argument("--deadline", type=float, default=0, help="stop starting new rows after S seconds")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    for mode in args.modes.split(","):
        if mode not in MODES:
            sys.exit(f"Cannot use mode {mode!r}: expected one of {', '.join(MODES)}")

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    report = {
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "trials": args.trials,
        "repeats": args.repeats,
        "rows": [],
        "skipped": [],
    }
    started = time.monotonic()
    for name in args.models.split(","):
        try:
            model = build(name).to(device).eval()
        except ImportError as e:
            report["skipped"].append({"model": name, "reason": f"{type(e).__name__}: {e}"})
            print(f"{name}: skipped ({e})", file=sys.stderr)
            continue
        params = sum(p.numel() for p in model.parameters())
        size = args.size or SIZES[name]
        for batch in [int(b) for b in args.batches.split(",")]:
            for mode in args.modes.split(","):
                if args.deadline and time.monotonic() - started > args.deadline:
                    report["skipped"].append({"model": name, "batch": batch, "mode": mode, "reason": "deadline"})
                    continue
                set_mode(mode)
                x = torch.randn(batch, 3, size, size, device=device)
                try:
                    ms, shape, finite = time_forward(model, x, mode, args.trials, args.repeats, device)
                except RuntimeError as e:  # out of memory, unsupported op on this device
                    report["skipped"].append({"model": name, "batch": batch, "mode": mode, "reason": str(e)[:200]})
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                    continue
                row = {
                    "model": name, "size": size, "batch": batch, "mode": mode, "params": params,
                    "ms_per_batch": ms, "ms_per_image": ms / batch, "images_per_s": 1000 * batch / ms,
                    "output": shape, "finite": finite,
                }
                report["rows"].append(row)
                print(f"{name:9s} {size} b{batch:<3d} {mode:14s} {ms:9.3f} ms/batch {ms / batch:8.3f} ms/img"
                      f" {row['images_per_s']:8.1f} img/s  out {shape}{'' if finite else ' NON-FINITE'}",
                      file=sys.stderr, flush=True)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    text = json.dumps(report, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    else:
        print(text)


if __name__ == "__main__":
    main()
