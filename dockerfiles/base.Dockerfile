# syntax=docker/dockerfile:1.7
# plumb-base: the runtime layer every plumb image starts from.
#
# Slim Debian Python with a non-root user (uid/gid 10001) and the environment the
# images share. Nothing is compiled here and no build tool is installed: every
# dependency of plumb ships as a manylinux wheel. Rebuild it when the Python base gets
# a security release (docs/delivery.md, "Rebuilding images").
FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="plumb-base" \
      org.opencontainers.image.source="https://github.com/plumb-mlops/plumb" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/plumb \
    PATH=/opt/plumb/bin:${PATH} \
    HOME=/home/plumb \
    PLUMB_LOG_LEVEL=INFO

# The user owns only its home; /opt/plumb (filled by each image) stays root-owned and
# read-only to it. Pods mount an emptyDir at /tmp because their root filesystem is
# read-only. The system pip is removed: images run from the /opt/plumb venv.
RUN groupadd --gid 10001 plumb \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/plumb \
        --shell /usr/sbin/nologin plumb \
    && python -m pip uninstall --yes --quiet pip setuptools wheel

WORKDIR /home/plumb
USER 10001:10001
