# syntax=docker/dockerfile:1
# paretorm serving image: one Dockerfile for the CPU and the CUDA build.
#
#   CPU (default):  docker build -t paretorm:0.1.0-cpu .
#   CUDA:           docker build -t paretorm:0.1.0-cuda \
#                     --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 .
#
# Why this shape:
# - torch is installed first, from TORCH_INDEX, and pinned again when the project is installed: an unpinned
#   `torch` from PyPI would pull the multi-GB CUDA build into a CPU image. The CUDA wheels bundle their CUDA
#   runtime (nvidia-* wheels), so a slim Python base serves both; the host only needs the NVIDIA driver and
#   container toolkit. Pick the index (cu126, cu128, cu130, ...) that matches your driver.
# - Two stages: compilers and pip caches stay in the builder; the runtime copies only the virtualenv.
# - Non-root numeric UID (10001) so Kubernetes `runAsNonRoot` can verify it; the Kubernetes manifests use the
#   same UID.
# - Signals: the exec-form ENTRYPOINT makes `paretorm serve` PID 1, and uvicorn installs its own SIGTERM handler
#   (readiness -> 503, drain, exit 0). PID 1 does not reap orphaned children, so run with `docker run --init`
#   (compose: `init: true`) if anything in the model code spawns subprocesses.
# - No model weights in the image and nothing downloads at run time: mount weights and pass --model or
#   PARETORM_MODEL. Without a model the server builds its small demo model into PARETORM_CACHE_DIR.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS builder
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC=torch==2.13.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
RUN pip install --upgrade pip
# torch before the project, from the chosen index (CPU or CUDA build).
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
COPY clients ./clients
# Re-pinning TORCH_SPEC keeps pip on the torch build installed above (2.13.0+cpu satisfies ==2.13.0).
RUN pip install ".[service]" "${TORCH_SPEC}" \
    && pip check

FROM python:${PYTHON_VERSION}-slim-bookworm AS runtime
ARG PARETORM_UID=10001
LABEL org.opencontainers.image.title="paretorm" \
      org.opencontainers.image.description="Multi-objective (ArmoRM-style) reward model server" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid "${PARETORM_UID}" paretorm \
    && useradd --system --uid "${PARETORM_UID}" --gid paretorm --home-dir /home/paretorm --create-home \
       --shell /usr/sbin/nologin paretorm \
    && mkdir -p /models /var/cache/paretorm \
    && chown paretorm:paretorm /var/cache/paretorm
COPY --from=builder /opt/venv /opt/venv
# MALLOC_*: keep glibc from returning large buffers to the OS after every forward pass; measured 15-30% more
# CPU throughput (environment.md section 8). Harmless on GPU. The root filesystem may be read-only (compose,
# Kubernetes): library caches go under the writable cache dir.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    PARETORM_HOST=0.0.0.0 \
    PARETORM_PORT=8000 \
    PARETORM_CACHE_DIR=/var/cache/paretorm \
    HF_HOME=/var/cache/paretorm/huggingface \
    XDG_CACHE_HOME=/var/cache/paretorm/xdg \
    MALLOC_MMAP_THRESHOLD_=33554432 \
    MALLOC_TRIM_THRESHOLD_=1073741824 \
    MALLOC_TOP_PAD_=268435456
USER 10001:10001
WORKDIR /home/paretorm
EXPOSE 8000
# Liveness only (process up): the model may take minutes to load. Readiness is /health/ready.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PARETORM_PORT', '8000') + '/health/live', timeout=4)"]
ENTRYPOINT ["paretorm", "serve"]
CMD []
