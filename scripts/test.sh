#!/usr/bin/env bash
# Install plumb with its test tools into .venv (created if missing) and run the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -d .venv ] || python3.11 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# Command-line tools some tests drive (helm, checkov, hadolint, chromium), when the
# project's installer for them is present.
if [ -f scripts/install-tools.sh ]; then
    bash scripts/install-tools.sh
fi
export PATH="$PWD/.tools/bin:$PATH"
exec .venv/bin/python -m pytest "$@"
