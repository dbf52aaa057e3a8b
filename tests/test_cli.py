"""The `plumb` CLI: bad input gives one clear line and exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def _plumb(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plumb", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _assert_one_error_line(stderr: str, message: str) -> None:
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert message in errors[0]
    assert "Traceback" not in stderr


BAD_DATA = {
    "empty.csv": ("", "is empty"),
    "header-only.csv": ("a,b,y\n", "has no rows"),
    "no-target.csv": ("a,b\n1,2\n3,4\n", "column 'y' not found"),
    "all-missing-target.csv": ("a,y\n1,\n2,\n", "all missing"),
    "one-class.csv": ("a,y\n1,x\n2,x\n3,x\n", "single class 'x'"),
    "duplicate-columns.csv": ("a,a,y\n1,2,x\n3,4,z\n", "repeats column names ['a']"),
    "text-in-number.csv": (
        "a,y\n" + "".join(f"{i},{i % 2}\n" for i in range(40)) + "oops,1\n",
        "column 'a' is numeric but holds text: 'oops'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_DATA))
def test_bad_data_file_exits_2_with_one_line(name: str, tmp_path: Path) -> None:
    """Each broken table is refused before any run folder is made."""
    text, message = BAD_DATA[name]
    data = _write(tmp_path / name, text)
    result = _plumb(
        "run", "--dataset", str(data), "--set", "data.target=y", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr
    _assert_one_error_line(result.stderr, message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "flight"], "unknown dataset 'flight'"),
        (["--dataset", "missing.csv"], "data file not found: 'missing.csv'"),
        (["--config", "nope.yaml"], "config file not found: 'nope.yaml'"),
        (["--set", "training.epoch=3"], "unknown key 'training.epoch'"),
        (["--set", "training.epochs=many"], "training.epochs"),
        (["--set", "noequals"], "--set expects KEY=VALUE"),
        (
            [
                "--dataset",
                "breast-cancer",
                "--set",
                "evaluation.gate.thresholds={nope: 1}",
            ],
            "unknown metric 'nope'",
        ),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    """Typos in names, paths and overrides are named in one line with exit code 2."""
    result = _plumb("run", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    _assert_one_error_line(result.stderr, message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "--max-rows", "abc"], "Invalid value for '--max-rows'"),
        (["run", "--bogus-flag"], "No such option: --bogus-flag"),
        (["nosuchcmd"], "No such command 'nosuchcmd'"),
        (["serve"], "Missing argument"),
    ],
)
def test_usage_errors_exit_2_without_traceback(
    args: list[str], message: str, tmp_path: Path
) -> None:
    """Malformed command lines print click's usage hint, exit 2 and leak no traceback."""
    result = _plumb(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_config_typo_in_file(tmp_path: Path) -> None:
    """An unknown key in plumb.yaml is found without --config and reported with its path."""
    _write(tmp_path / "plumb.yaml", "data:\n  datset: credit\n")
    result = _plumb("config", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key 'data.datset'" in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    """--debug trades the one-line message for the full traceback."""
    result = _plumb("--debug", "run", "--dataset", "flight", cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_config_prints_resolved_defaults(tmp_path: Path) -> None:
    """`plumb config` prints every section with defaults filled in."""
    result = _plumb("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for section in ("data:", "training:", "compression:", "evaluation:", "deployment:"):
        assert section in result.stdout


def test_config_shows_builtin_dataset_choices(tmp_path: Path) -> None:
    """For a built-in dataset, `plumb config` shows the target and split it will use."""
    (tmp_path / "plumb.yaml").write_text("data:\n  dataset: credit\n", encoding="utf-8")
    result = _plumb("config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(result.stdout)["data"]
    assert data["target"] == "Status"
    assert data["positive_class"] == "bad"
    assert "Income" in data["features"]
    assert data["split"]["test_fraction"] == pytest.approx(0.15)
