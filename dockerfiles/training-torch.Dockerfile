# syntax=docker/dockerfile:1.7
# plumb-training-torch: PyTorch DDP workers (TrainJob / PyTorchJob pods).
#
#   docker build -f dockerfiles/training-torch.Dockerfile \
#     -t ghcr.io/plumb-mlops/plumb-training-torch:0.1.0 .
#
# torch comes from the PyTorch wheel index named by TORCH_INDEX_URL. The default is the
# CPU index: the plain PyPI wheel for Linux pulls several GB of CUDA libraries. For GPU
# workers build a second tag with the CUDA index that matches the nodes' driver, e.g.
#   --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
#   -t ghcr.io/plumb-mlops/plumb-training-torch:0.1.0-cuda
# The version stays the one in dockerfiles/constraints.txt either way.
ARG BASE_IMAGE=ghcr.io/plumb-mlops/plumb-base:0.1.0

FROM python:3.11.14-slim-bookworm AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY dockerfiles/constraints.txt dockerfiles/constraints.txt
COPY dockerfiles/requirements/ dockerfiles/requirements/
# torch alone from its wheel index (--no-deps: that index mirrors only some versions of
# torch's dependencies); the next install resolves those from PyPI at the locked pins.
RUN python -m venv /opt/plumb \
    && /opt/plumb/bin/pip install --no-cache-dir --constraint dockerfiles/constraints.txt \
        --no-deps --index-url "${TORCH_INDEX_URL}" torch \
    && /opt/plumb/bin/pip install --no-cache-dir --constraint dockerfiles/constraints.txt \
        --requirement dockerfiles/requirements/training-torch.txt
COPY pyproject.toml README.md ./
COPY plumb/ plumb/
COPY components/ components/
COPY pipelines/ pipelines/
RUN /opt/plumb/bin/pip install --no-cache-dir --no-deps . \
    && /opt/plumb/bin/pip uninstall --yes --quiet pip setuptools wheel

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="plumb-training-torch" \
      org.opencontainers.image.description="plumb's PyTorch training workers"
COPY --from=build /opt/plumb /opt/plumb
USER 10001:10001
# No CMD: the TrainJob / PyTorchJob the train component creates names the command.
ENTRYPOINT ["python"]
