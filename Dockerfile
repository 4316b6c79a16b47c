# The project image: CLI, workers and Flower. CUDA comes with PyTorch's wheels
# (the host needs only the NVIDIA driver and container toolkit), so a slim base suffices.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 ATELIER_HOME=/var/lib/atelier ATELIER_ARTIFACTS=/artifacts
RUN useradd --create-home --uid 1000 atelier \
 && mkdir -p /var/lib/atelier /artifacts && chown atelier /var/lib/atelier /artifacts
WORKDIR /opt/atelier
COPY pyproject.toml README.md ./
COPY orchestrator orchestrator
COPY worker worker
COPY db db
RUN pip install "torch==2.14.1" "torchvision==0.29.1" . 
USER atelier
ENTRYPOINT ["atelier"]
CMD ["--help"]
