"""Fixtures for the delivery checks: the tools, and the stacks rendered once.

helm, hadolint and checkov come from scripts/install-tools.sh (into .tools/bin, which is
searched before PATH); kubectl (with its built-in kustomize) from PATH. A check whose
tool is missing is skipped with the command that installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
CHART = ROOT / "charts" / "plumb"
TOOLS_BIN = ROOT / ".tools" / "bin"
ENVIRONMENTS = ("dev", "staging", "prod")
INSTALL_HINT = "run scripts/install-tools.sh"


def find_tool(name: str) -> str | None:
    """Path of a tool in .tools/bin, else on PATH, else None."""
    local = TOOLS_BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def require_tool(name: str) -> str:
    """Path of a tool, or skip the test saying how to install it."""
    path = find_tool(name)
    if path is None:
        pytest.skip(f"{name} is not installed; {INSTALL_HINT}")
    return path


def run_tool(*args: str, cwd: Path = ROOT, timeout: float = 120) -> str:
    """Run a tool, failing the test with its output when it exits non-zero."""
    env = {**os.environ, "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        list(args),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result.stdout


def load_documents(text: str) -> list[dict[str, Any]]:
    """Parse a multi-document YAML stream, dropping empty documents."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def kustomize(path: Path) -> list[dict[str, Any]]:
    """Render a kustomization with `kubectl kustomize`."""
    kubectl = require_tool("kubectl")
    return load_documents(run_tool(kubectl, "kustomize", str(path)))


def helm_template(
    *values_files: Path, namespace: str = "plumb"
) -> list[dict[str, Any]]:
    """Render the chart as release `plumb` with the given values files."""
    helm = require_tool("helm")
    args = [helm, "template", "plumb", str(CHART), "--namespace", namespace]
    for path in values_files:
        args += ["--values", str(path)]
    return load_documents(run_tool(*args))


@pytest.fixture(scope="session")
def overlays() -> dict[str, list[dict[str, Any]]]:
    """Every overlay rendered by kubectl kustomize."""
    return {env: kustomize(MANIFESTS / "overlays" / env) for env in ENVIRONMENTS}


@pytest.fixture(scope="session")
def all_components(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The base with every opt-in component switched on."""
    folder = tmp_path_factory.mktemp("all-components")
    base = os.path.relpath(MANIFESTS / "base", folder)
    components = sorted(p for p in (MANIFESTS / "components").iterdir() if p.is_dir())
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [base],
        "components": [os.path.relpath(p, folder) for p in components],
    }
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    return kustomize(folder)
