# syntax=docker/dockerfile:1
# The project image: the `atelier` CLI, the GPU workers and Flower (see docker-compose.yml).
#
# Base: python:3.11-slim, not an nvidia/cuda image. PyTorch's Linux wheels on PyPI
# carry their own CUDA runtime, cuDNN and NCCL (the nvidia-* wheels), so a CUDA base
# would only add a second, unused copy of them. What the container needs from the
# host is the NVIDIA driver, which the NVIDIA Container Toolkit mounts in when the
# service reserves a GPU. The driver must be new enough for the CUDA version of the
# torch wheel (torch 2.14 from PyPI: CUDA 13); with an older driver build with
# --build-arg TORCH_INDEX_URL=<a PyTorch wheel index for your CUDA version>.
FROM python:3.11-slim

ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
# Empty: the default index (PyPI).
ARG TORCH_INDEX_URL=""

# NVIDIA_DRIVER_CAPABILITIES: the compute (CUDA) and utility (nvidia-smi) driver libraries,
# all a worker uses. ATELIER_*: what a container gets when docker-compose.yml says nothing.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    ATELIER_HOME=/var/lib/atelier \
    ATELIER_ARTIFACTS=/artifacts

# A fixed non-root uid. /artifacts exists in the image and belongs to that user, so a
# fresh named volume mounted there starts with the same owner (Docker copies it).
RUN useradd --create-home --uid 10001 --user-group atelier \
 && mkdir -p /var/lib/atelier /artifacts /data \
 && chown atelier:atelier /var/lib/atelier /artifacts \
 && python -m venv "$VIRTUAL_ENV"

WORKDIR /opt/atelier

# The heavy, rarely changing layers first: torch, then the declared dependencies
# (read from pyproject.toml), so that editing the code rebuilds only the last layer.
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"
COPY pyproject.toml README.md ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && rm /tmp/requirements.txt

COPY orchestrator ./orchestrator
COPY worker ./worker
COPY db ./db
COPY core ./core
COPY corpus ./corpus
RUN pip install . "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
 && atelier --help > /dev/null

USER atelier
WORKDIR /home/atelier
# No ENTRYPOINT: a service's command is a whole `atelier ...` line, as typed on a host.
# docker-compose.yml runs every container with `init: true`, so signals reach the
# worker and exited prefork children are reaped.
CMD ["atelier", "--help"]
