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


SERVING_OUTPUT = """plumb serving benchmark on 127.0.0.1 (2 CPUs visible)
scenario                               req/s     rows/s   p50 ms   p99 ms cpu ms/req errors
--------------------------------------------------------------------------------------------
noop (HTTP floor)                        870        870     7.21    26.60      1.234      0
plumb int8, 1000-row requests             55      55333    35.16    73.91     12.500      0

model only, in-process (rows/s):
  plumb int8, 1 row(s)                       12345

ratios (goal in brackets):
  int8 / torch eager fp32 throughput, 1 row :     2.47x  [>= 2x]
  int8 p50 / no-op p50 (HTTP floor)         :     1.22x  [<= 1.3x]
  rows/s, 1000-row requests, V1 JSON rows   :     55333  [>= 200000]
  rows/s, 1000-row requests, no-op floor    :     99999
"""


def test_serving_output_is_read_by_its_header() -> None:
    """Columns come from the header (an added column shifts nothing); ratios parse."""
    from bench import harness

    rows = harness.serving_rows(SERVING_OUTPUT)
    assert rows["noop (HTTP floor)"] == {
        "req/s": 870.0,
        "rows/s": 870.0,
        "p50 ms": 7.21,
        "p99 ms": 26.60,
        "cpu ms/req": 1.234,
        "errors": 0.0,
    }
    assert rows["plumb int8, 1000-row requests"]["p99 ms"] == 73.91
    assert len(rows) == 2  # the table ends at the blank line

    section = harness.Section(name="serving")
    harness._parse(section, SERVING_OUTPUT, harness.SERVING_RATIOS)
    batches = harness.SERVING_BATCH.findall(SERVING_OUTPUT)
    assert batches == [("V1 JSON rows", "55333")]  # the no-op floor is no goal row
    assert section.figures["int8 p50 / no-op p50 (HTTP floor)"].values == [1.22]
    assert not section.notes
