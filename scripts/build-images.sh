#!/usr/bin/env bash
# Build (and optionally push) every plumb image, tagged from components/common/images.py.
#
# Usage: scripts/build-images.sh [--push] [extra docker build args...]
#   e.g. scripts/build-images.sh --push --pull --no-cache      (security rebuild)
# Needs docker with BuildKit (or set DOCKER="podman").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-${ROOT}/.venv/bin/python}"
DOCKER="${DOCKER:-docker}"
PUSH=false
if [[ "${1:-}" == "--push" ]]; then
  PUSH=true
  shift
fi

cd "${ROOT}"
base_ref=""
while read -r name dockerfile ref; do
  echo "building ${ref} from ${dockerfile}" >&2
  if [[ "${name}" == "plumb-base" ]]; then
    "${DOCKER}" build -f "${dockerfile}" -t "${ref}" "$@" .
    base_ref="${ref}"
  else
    "${DOCKER}" build -f "${dockerfile}" -t "${ref}" \
      --build-arg "BASE_IMAGE=${base_ref}" "$@" .
  fi
  if [[ "${PUSH}" == true ]]; then
    "${DOCKER}" push "${ref}"
  fi
done < <("${PYTHON}" -m components.common.images)
