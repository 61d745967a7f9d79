# syntax=docker/dockerfile:1
# The runner's container image, one per pipeline group (PIPELINE_GROUP, a pyproject extra).
# Build them all with `docker buildx bake`, or one with `docker buildx bake text-to-image`.
# Layers are ordered so that a code change reinstalls neither torch nor the dependencies.
ARG CUDA_VERSION=12.8.1
ARG UBUNTU_VERSION=24.04

FROM nvidia/cuda:${CUDA_VERSION}-runtime-ubuntu${UBUNTU_VERSION} AS python
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

FROM python AS build
ARG TORCH_VERSION=2.9.1
ARG TORCHVISION_VERSION=0.24.1
ARG PIPELINE_GROUP=diffusion
ENV PATH=/opt/venv/bin:$PATH \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# 1. torch, pinned to the build stable-fast supports; the largest layer, cached across builds.
RUN python3.12 -m venv /opt/venv \
    && pip install torch==${TORCH_VERSION} torchvision==${TORCHVISION_VERSION}
# 2. The group's dependencies, read from pyproject.toml alone.
COPY pyproject.toml README.md /src/
RUN python -c "import sys, tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]]))" "${PIPELINE_GROUP}" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
# 3. The runner itself.
COPY runner /src/runner
COPY pipelines /src/pipelines
COPY tiny_models /src/tiny_models
RUN pip install --no-deps /src

FROM python AS runtime
ARG VERSION=0.15.0
ARG PIPELINE_GROUP=diffusion
LABEL org.opencontainers.image.title="ai-runner-${PIPELINE_GROUP}" \
      org.opencontainers.image.description="Livepeer AI runner: ${PIPELINE_GROUP} pipelines" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/livepeer/ai-runner" \
      org.opencontainers.image.licenses="MIT" \
      ai.livepeer.runner.pipeline-group="${PIPELINE_GROUP}"
# Ubuntu 24.04's images carry a user "ubuntu" with uid 1000; the runner user takes that uid.
RUN userdel --remove ubuntu \
    && useradd --create-home --uid 1000 runner \
    && mkdir /models \
    && chown runner:runner /models
COPY --from=build /opt/venv /opt/venv
# Models come from the folder mounted at /models, a Hugging Face hub cache; what ai-runner
# fetches at run time is fetched into it, unless HF_HUB_OFFLINE=1 is set (docs/operators.md).
ENV PATH=/opt/venv/bin:$PATH \
    HF_HOME=/models \
    HF_HUB_CACHE=/models \
    MODEL_DIR=/models \
    HOST=0.0.0.0 \
    PORT=8000 \
    VERSION=${VERSION}
# Root by default, as ai-runner's image: the orchestrator's models folder is usually root's,
# and the safety checker, the SDXL base and LoRAs are fetched into it. `--user runner` (uid
# 1000) runs unprivileged where /models is writable by that user.
WORKDIR /home/runner
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=6s --start-period=300s --retries=3 CMD ["ai-runner", "healthcheck"]
# Exec form: SIGTERM reaches the runner, which drains in-flight requests before exiting.
CMD ["ai-runner", "serve"]
