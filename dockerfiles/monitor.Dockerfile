# syntax=docker/dockerfile:1.7
# plumb-monitor: the Evidently drift monitor fed by KServe's request logger.
#
#   docker build -f dockerfiles/monitor.Dockerfile -t ghcr.io/plumb-mlops/plumb-monitor:0.1.0 .
ARG BASE_IMAGE=ghcr.io/plumb-mlops/plumb-base:0.1.0

FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY dockerfiles/constraints.txt dockerfiles/constraints.txt
COPY dockerfiles/requirements/ dockerfiles/requirements/
RUN python -m venv /opt/plumb \
    && /opt/plumb/bin/pip install --no-cache-dir --constraint dockerfiles/constraints.txt \
        --requirement dockerfiles/requirements/monitor.txt
COPY pyproject.toml README.md ./
COPY plumb/ plumb/
COPY components/ components/
COPY pipelines/ pipelines/
RUN /opt/plumb/bin/pip install --no-cache-dir --no-deps . \
    && /opt/plumb/bin/pip uninstall --yes --quiet pip setuptools wheel

FROM ${BASE_IMAGE}
LABEL org.opencontainers.image.title="plumb-monitor" \
      org.opencontainers.image.description="plumb's Evidently drift monitor"
COPY --from=build /opt/plumb /opt/plumb
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["plumb"]
CMD ["monitor", "--model-dir", "/mnt/models", "--state-dir", "/var/lib/plumb-monitor", \
     "--host", "0.0.0.0", "--port", "8080"]
