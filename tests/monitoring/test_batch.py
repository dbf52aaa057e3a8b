"""`plumb drift`: the window report for two files, and its bad-input errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from monitor_helpers import REPO, FlightsModel

from components.common.artifacts import write_table


def _plumb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "plumb", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_plumb_drift_writes_report_for_two_files(
    flights_model: FlightsModel, tmp_path: Path
) -> None:
    """Distant months against the model's reference: month drifts, predictions compared."""
    current = tmp_path / "current.parquet"
    write_table(flights_model.distant_months, current)
    output = tmp_path / "report"
    completed = _plumb(
        "drift",
        "--current",
        str(current),
        "--model-dir",
        str(flights_model.model_dir),
        "--output",
        str(output),
        "--set",
        "monitoring.html_reports=false",
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads((output / "report.json").read_text())
    assert "month" in report["drifted_column_names"]
    assert report["drift"]["prediction_drift"] is not None
    assert report["rows"] == len(flights_model.distant_months)
    # HTML is covered by the monitor's tests; off here to keep this test quick.
    assert not (output / "report.html").exists()
    assert "month" in completed.stdout


def test_plumb_drift_bad_input_exits_2(tmp_path: Path) -> None:
    """Missing files or schema give one line on stderr and exit code 2."""
    missing = _plumb("drift", "--reference", "nope.csv", "--current", "nope.csv")
    assert missing.returncode == 2
    assert "schema" in missing.stderr
    no_current = _plumb("drift", "--reference", "a.csv")
    assert no_current.returncode == 2 and "--current" in no_current.stderr
