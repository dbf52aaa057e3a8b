# syntax=docker/dockerfile:1.7
# plumb: the image the pipeline's components run in (preprocess, single-process train,
# compress, evaluate, deploy, monitor). It installs plumb with every pinned dependency.
#
#   docker build -f dockerfiles/pipeline.Dockerfile -t ghcr.io/plumb-mlops/plumb:0.1.0 .
#
# torch comes from the CPU wheel index (see training-torch.Dockerfile for why and for
# the CUDA variant); everything else from PyPI at the versions in dockerfiles/constraints.txt.
ARG BASE_IMAGE=ghcr.io/plumb-mlops/plumb-base:0.1.0

FROM python:3.11.14-slim-bookworm AS build
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY dockerfiles/constraints.txt dockerfiles/constraints.txt
# torch alone from its wheel index (--no-deps: that index mirrors only some versions of
# torch's dependencies); the next install resolves those from PyPI at the locked pins.
RUN python -m venv /opt/plumb \
    && /opt/plumb/bin/pip install --no-cache-dir --constraint dockerfiles/constraints.txt \
        --no-deps --index-url "${TORCH_INDEX_URL}" torch
COPY pyproject.toml README.md ./
COPY plumb/ plumb/
COPY components/ components/
COPY pipelines/ pipelines/
# KFP's generated command runs `python3 -m kfp.dsl.executor_main`: the venv's python3
# comes first on PATH (plumb-base), and kfp is one of plumb's pinned dependencies.
RUN /opt/plumb/bin/pip install --no-cache-dir --constraint dockerfiles/constraints.txt . \
    && /opt/plumb/bin/pip uninstall --yes --quiet pip setuptools wheel

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="plumb" \
      org.opencontainers.image.description="plumb's Kubeflow Pipelines components"
ENV TF_USE_LEGACY_KERAS=1
COPY --from=build /opt/plumb /opt/plumb
USER 10001:10001
ENTRYPOINT ["plumb"]
CMD ["--help"]
