# derm-webgpu serving image: Derm Foundation's Vertex AI prediction API (`deno task serve`), for a Vertex AI
# custom container, Cloud Run, Kubernetes or plain `docker run`. Build from the repository root:
#   docker build -f deploy/serve.Dockerfile -t derm-webgpu-serve:0.1.0 .
#   docker run -p 8080:8080 -e DERM_WEIGHTS=/models/derm_foundation.safetensors \
#     -v "$PWD/models:/models:ro" derm-webgpu-serve:0.1.0
#
# The weights are not in the image (Derm Foundation's are gated): DERM_WEIGHTS names a file in the container
# (a mounted volume) or an http(s) URL of a safetensors file, read at startup; DERM_CLASSIFIER, a
# classifier.json of `deno task probe`. Or give flags in place of CMD, e.g. for Vertex AI
# (containerSpec.args): ["deno", "task", "serve", "--weights", "https://.../derm.safetensors", "--size", "448"].
# The server listens on AIP_HTTP_PORT (8080 unless Vertex AI sets another) and serves AIP_PREDICT_ROUTE and
# AIP_HEALTH_ROUTE; health is 503 until the weights are loaded. SIGTERM: finishes the requests in flight,
# exits 0 (deno task passes the signal on to the server).
#
# WebGPU in Deno runs on Vulkan here: on CPU-only hosts Mesa's lavapipe (mesa-vulkan-drivers), a software
# fallback; on NVIDIA GPU hosts the NVIDIA container toolkit mounts the host driver and its Vulkan ICD when
# the "graphics" capability is asked for (NVIDIA_DRIVER_CAPABILITIES), and wgpu prefers the GPU to lavapipe.
# GPU-node variant: the same image; on Vertex AI give the model a GPU machine type (e.g. g2-standard-8 with
# one NVIDIA L4), on GKE a GPU node pool and a `nvidia.com/gpu: 1` limit; the health route's "adapter" (and
# `--verbose`) names the adapter in use, to confirm it is the GPU and not lavapipe.

FROM denoland/deno:bin-2.9.6 AS deno

FROM debian:bookworm-slim
RUN apt-get update \
  && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    ca-certificates libvulkan1 mesa-vulkan-drivers \
  && rm -rf /var/lib/apt/lists/*
COPY --from=deno /deno /usr/local/bin/deno

ENV DENO_DIR=/opt/deno-dir \
    DENO_WEBGPU_BACKEND=vulkan \
    XDG_RUNTIME_DIR=/tmp/xdg \
    DERM_WEBGPU_CACHE=/opt/derm-webgpu-cache \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics

WORKDIR /opt/derm-webgpu
COPY deno.json deno.lock mod.ts ./
COPY cli ./cli
COPY engine ./engine
COPY kernels ./kernels
COPY models ./models
COPY weights ./weights
# Every module and npm package the server loads, fetched at build time (the decode worker and the weight
# loaders are loaded dynamically, so they are named too): the container needs no registry.
RUN deno cache --frozen cli/serve.ts cli/decode_worker.ts weights/safetensors_deno.ts weights/pytorch_deno.ts \
  && mkdir -p -m 700 /tmp/xdg
EXPOSE 8080
ENTRYPOINT []
CMD ["deno", "task", "serve", "--host", "0.0.0.0"]
