# syntax=docker/dockerfile:1.7
# plumb-training-tf: TensorFlow MultiWorkerMirroredStrategy workers (TFJob pods).
#
#   docker build -f dockerfiles/training-tf.Dockerfile \
#     -t ghcr.io/plumb-mlops/plumb-training-tf:0.1.0 .
#
# The tensorflow wheel from PyPI runs on CPU and, with the NVIDIA libraries present, on
# GPU; TF_USE_LEGACY_KERAS selects tf_keras (Keras 2), which tfmot needs.
ARG BASE_IMAGE=ghcr.io/plumb-mlops/plumb-base:0.1.0

FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY dockerfiles/constraints.txt dockerfiles/constraints.txt
COPY dockerfiles/requirements/ dockerfiles/requirements/
RUN python -m venv /opt/plumb \
    && /opt/plumb/bin/pip install --no-cache-dir --constraint dockerfiles/constraints.txt \
        --requirement dockerfiles/requirements/training-tf.txt
COPY pyproject.toml README.md ./
COPY plumb/ plumb/
COPY components/ components/
COPY pipelines/ pipelines/
RUN /opt/plumb/bin/pip install --no-cache-dir --no-deps . \
    && /opt/plumb/bin/pip uninstall --yes --quiet pip setuptools wheel

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="plumb-training-tf" \
      org.opencontainers.image.description="plumb's TensorFlow training workers"
ENV TF_USE_LEGACY_KERAS=1 \
    TF_CPP_MIN_LOG_LEVEL=1
COPY --from=build /opt/plumb /opt/plumb
USER 10001:10001
# No CMD: the TFJob the train component creates names the command.
ENTRYPOINT ["python"]
