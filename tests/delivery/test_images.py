"""Container images: hadolint-clean Dockerfiles, one lock, names from images.py."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from components.common import images

from .conftest import ROOT, require_tool, run_tool

DOCKERFILES = sorted((ROOT / "dockerfiles").glob("*.Dockerfile"))
CONSTRAINTS = ROOT / "dockerfiles" / "constraints.txt"


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for raw in lines:
        entry = raw.split("#", 1)[0].strip()
        if "==" in entry:
            name, version = entry.split("==", 1)
            pins[_normalise(name)] = version.strip()
    return pins


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.stem)
def test_hadolint_passes(dockerfile: Path) -> None:
    """hadolint (all rules, style included) finds nothing in the Dockerfile."""
    hadolint = require_tool("hadolint")
    run_tool(hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(dockerfile))


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    """The lint above fails on an unpinned base and a root user (it can fail)."""
    import subprocess

    hadolint = require_tool("hadolint")
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM python\nRUN pip install torch\nUSER root\n")
    result = subprocess.run(
        [hadolint, "--config", str(ROOT / ".hadolint.yaml"), str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    for rule in ("DL3006", "DL3013", "DL3002"):
        assert rule in result.stdout


def test_one_dockerfile_per_image_and_all_run_as_non_root() -> None:
    """images.py names every Dockerfile; each image ends as uid 10001 on plumb-base."""
    assert {ROOT / image.dockerfile for image in images.IMAGES} == set(DOCKERFILES)
    for image in images.IMAGES:
        text = (ROOT / image.dockerfile).read_text()
        users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
        assert users and users[-1] == "10001:10001", image.name
        froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
        if image is images.BASE:
            assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", froms[0])
        else:
            assert froms[-1] == "${BASE_IMAGE}", image.name
            assert f"ARG BASE_IMAGE={images.BASE.ref}" in text
            # Build tools (pip) never reach the final stage.
            assert "pip uninstall --yes --quiet pip setuptools wheel" in text


def test_the_lock_holds_every_pyproject_pin() -> None:
    """dockerfiles/constraints.txt pins each dependency exactly as pyproject.toml does."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = _pins(project["project"]["dependencies"])
    locked = _pins(CONSTRAINTS.read_text().splitlines())
    mismatched = {
        name: (version, locked.get(name))
        for name, version in wanted.items()
        if locked.get(name) != version
    }
    assert mismatched == {}


def test_requirement_files_name_locked_packages() -> None:
    """Each image's requirement list names packages the lock pins (or pins its own)."""
    locked = _pins(CONSTRAINTS.read_text().splitlines())
    for path in sorted((ROOT / "dockerfiles" / "requirements").glob("*.txt")):
        for line in path.read_text().splitlines():
            entry = line.split("#", 1)[0].strip()
            if not entry or entry.startswith("-r"):
                continue
            if "==" in entry:
                continue  # pinned in place (the GPU build), with a comment saying why
            assert _normalise(entry) in locked, f"{path.name}: {entry} is not locked"


def test_chart_and_manifests_use_the_tag_images_py_sets() -> None:
    """The tag in images.py is the one the kustomize stack names for its images."""
    text = (ROOT / "manifests" / "base" / "servingruntime.plumb-onnx.yaml").read_text()
    assert f"image: {images.PREDICTOR_IMAGE}" in text
    text = (ROOT / "manifests" / "base" / "deployment.plumb-monitor.yaml").read_text()
    assert f"image: {images.MONITOR_IMAGE}" in text


def test_no_folder_shadows_the_docker_package() -> None:
    """No top-level `docker/` folder: as a namespace package it would satisfy kfp's
    optional `import docker` and break the local runner (`python -m plumb` puts the
    repository root first on sys.path)."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import docker, sys; print(docker.__path__)"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert str(ROOT / "docker") not in result.stdout
