# syntax=docker/dockerfile:1.7
# plumb-predictor: plumb's KServe predictor, run by the `plumb-onnx` ServingRuntime.
#
#   docker build -f dockerfiles/predictor.Dockerfile -t ghcr.io/plumb-mlops/plumb-predictor:0.1.0 .
#
# Serves ONNX models with onnxruntime. TFLite models need the LiteRT interpreter:
# build with --build-arg WITH_TFLITE=true (adds LiteRT). For GPU nodes build a
# `-gpu` tag with --build-arg WITH_GPU=true (onnxruntime-gpu; used by components/gpu-serving).
ARG BASE_IMAGE=ghcr.io/plumb-mlops/plumb-base:0.1.0

FROM python:3.11.14-slim-bookworm AS build
ARG WITH_TFLITE=false
ARG WITH_GPU=false
WORKDIR /src
COPY dockerfiles/constraints.txt dockerfiles/constraints.txt
COPY dockerfiles/requirements/ dockerfiles/requirements/
RUN python -m venv /opt/plumb \
    && /opt/plumb/bin/pip install --no-cache-dir --constraint dockerfiles/constraints.txt \
        --requirement dockerfiles/requirements/predictor.txt \
    && if [ "${WITH_TFLITE}" = "true" ]; then \
        /opt/plumb/bin/pip install --no-cache-dir --constraint dockerfiles/constraints.txt \
            --requirement dockerfiles/requirements/predictor-tflite.txt; \
    fi \
    && if [ "${WITH_GPU}" = "true" ]; then \
        /opt/plumb/bin/pip uninstall --yes onnxruntime \
        && /opt/plumb/bin/pip install --no-cache-dir \
            --requirement dockerfiles/requirements/predictor-gpu.txt; \
    fi
COPY pyproject.toml README.md ./
COPY plumb/ plumb/
COPY components/ components/
COPY pipelines/ pipelines/
# plumb itself without dependencies: the pinned set above is exactly what it runs with.
# pip leaves with the build stage; the final image cannot install anything.
RUN /opt/plumb/bin/pip install --no-cache-dir --no-deps . \
    && /opt/plumb/bin/pip uninstall --yes --quiet pip setuptools wheel

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="plumb-predictor" \
      org.opencontainers.image.description="plumb's KServe predictor (ONNX, optional TFLite)"
COPY --from=build /opt/plumb /opt/plumb
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["plumb"]
CMD ["serve", "/mnt/models", "--host", "0.0.0.0", "--port", "8080"]
