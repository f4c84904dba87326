# syntax=docker/dockerfile:1
# The advhpo image of docker-compose.yml: `advhpo` with a CUDA build of torch. The GPU workers
# run it, and so do the one-shot `data` and `init` services and the dashboard.
#
#   docker compose build        # or: docker build -t advhpo:latest .
#
# PyPI's torch wheels for Linux x86_64 are CUDA builds that bring the CUDA runtime and cuDNN
# along as nvidia-* wheels, so a slim Python base suffices: the host needs only the NVIDIA
# driver and the NVIDIA Container Toolkit. For another CUDA (an older driver), pass e.g.
# --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

# The versions CI tests (README "Run the tests").
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://pypi.org/simple

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# torch in a layer of its own: gigabytes that stay cached while the project's code changes.
RUN pip install --index-url "${TORCH_INDEX_URL}" \
        "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}"

# The project (its other dependencies include optuna-dashboard) and the PostgreSQL driver.
COPY . /tmp/advhpo
RUN pip install '/tmp/advhpo[postgres]' && rm -rf /tmp/advhpo

# Not root. The volume mount points are created here, owned by that user, so that Docker
# initialises the named volumes `datasets` and `artifacts` writable for it.
RUN useradd --create-home --uid 10001 advhpo \
    && mkdir -p /data /artifacts \
    && chown advhpo:advhpo /data /artifacts
USER advhpo
WORKDIR /home/advhpo

ENTRYPOINT ["advhpo"]
CMD ["--help"]
