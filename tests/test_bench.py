"""The benchmark harness: memory and time accounting, log parsing, Markdown rendering."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.harness import run_child, stage_seconds
from bench.report import render_markdown
from components.common.artifacts import read_json

RESULTS = Path(__file__).parents[1] / "bench" / "results"


def test_child_peak_memory_is_the_os_accounting(tmp_path: Path) -> None:
    """A child that touches 200 MiB reports a peak RSS of at least that, and its output."""
    code = "b = bytearray(200 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('ok')"
    run = run_child([sys.executable, "-c", code], cwd=tmp_path, env={})
    assert run.returncode == 0 and run.output.strip() == "ok"
    # 200 MiB of touched pages plus the interpreter; a little slack below for rounding.
    assert run.peak_rss_mib >= 199
    assert run.seconds > 0


def test_stage_seconds_from_a_pipeline_log(tmp_path: Path) -> None:
    """Task durations come from kfp's start and finish lines of pipeline.log."""
    log = tmp_path / "pipeline.log"
    log.write_text(
        "17:15:57.162 - INFO - Executing task 'preprocess'\n"
        "    17:16:02 INFO components.preprocess: noise\n"
        "17:16:07.380 - INFO - Task 'preprocess' finished with status SUCCESS\n"
        "23:59:59.000 - INFO - Executing task 'train'\n"
        "00:00:04.500 - INFO - Task 'train' finished with status SUCCESS\n"
    )
    seconds = stage_seconds(log)
    assert abs(seconds["preprocess"] - 10.218) < 1e-6
    assert abs(seconds["train"] - 5.5) < 1e-6  # across midnight


def test_committed_results_render_every_section_and_goal() -> None:
    """Each committed results file renders: one row per figure, goals with verdicts."""
    files = sorted(RESULTS.glob("*.json"))
    assert files, "bench/results holds the committed results"
    for path in files:
        results = read_json(path)
        text = render_markdown(results, source=path.name)
        for name, section in results["sections"].items():
            assert f"### {name}" in text
            for figure in section["figures"]:
                assert f"| {figure['name']} |" in text
                if figure["goal"]:
                    verdict = "met" if figure["goal_met"] else "**not met**"
                    assert f": {verdict}" in text
        assert results["machine"]["cpu_model"] in text
