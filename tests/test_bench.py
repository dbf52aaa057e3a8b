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
  batching off / on (default), p50          :     1.45x
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
    assert section.figures["p50 without batching / with (the default)"].values == [1.45]
    assert not section.notes


def test_quick_serving_shares_one_server_per_kind_model_and_batching() -> None:
    """Quick mode runs every scenario, on 5 servers; full mode on a fresh one each."""
    from bench.serving import SCENARIOS, server_groups, server_key

    full = server_groups(SCENARIOS, share_servers=False)
    assert full == [[scenario] for scenario in SCENARIOS]

    quick = server_groups(SCENARIOS, share_servers=True)
    ran = [scenario.name for group in quick for scenario in group]
    assert sorted(ran) == sorted(scenario.name for scenario in SCENARIOS)
    assert len(ran) == len(set(ran))
    keys = [{server_key(s) for s in group} for group in quick]
    assert all(len(key) == 1 for key in keys)  # one server fits its whole group
    # noop, plumb int8, torch fp32, plumb int8 with a 2 ms batch window and without
    # batching.
    assert len(quick) == 5
    assert quick[0][0] is SCENARIOS[0]


def test_quick_pipeline_is_breast_cancer_on_one_worker() -> None:
    """Quick mode runs the breast-cancer example in-process; full mode all of flights."""
    from bench.harness import ROOT, pipeline_args

    assert pipeline_args(quick=False) == ["--dataset", "flights"]
    quick = pipeline_args(quick=True)
    config = Path(quick[quick.index("--config") + 1])
    assert config.is_file() and config.is_relative_to(ROOT)
    assert quick[quick.index("--set") + 1] == "training.workers=1"


def test_quick_results_say_their_figures_are_rough() -> None:
    """The quick note appears in quick results only."""
    from bench.report import QUICK_NOTE

    full = read_json(RESULTS / "2026-12-03-1858-full.json")
    assert full["mode"] == "full"
    assert QUICK_NOTE not in render_markdown(full)
    assert QUICK_NOTE in render_markdown({**full, "mode": "quick"})


def test_quick_training_report_still_gives_the_ceiling() -> None:
    """Without the second ceiling probe (quick), the table says so and still parses."""
    import math

    from bench import harness
    from bench.training import report

    figures = {
        "training_rows": 46_236.0,
        "epochs": 3.0,
        "batch_size": 462.0,
        "plain_rows_per_second": 370_000.0,
        "plumb_rows_per_second": 340_000.0,
        "one_worker_rows_per_second": 330_000.0,
        "two_workers_rows_per_second": 205_000.0,
        "two_workers_local_sgd_rows_per_second": 495_000.0,
        "one_worker_wall_seconds": 4.5,
        "two_workers_wall_seconds": 6.1,
        "two_workers_local_sgd_wall_seconds": 5.2,
        "one_worker_validation_loss": 0.5341,
        "two_workers_validation_loss": 0.5346,
        "two_workers_local_sgd_validation_loss": 0.5337,
        "two_vs_one_workers": 495_000 / 330_000,
        "two_vs_one_workers_ddp": 205_000 / 330_000,
        "plumb_overhead": 370_000 / 340_000 - 1,
        "load_average_before": 1.35,
        "load_average_after": 1.62,
        "parallel_ceiling_before": 2.09,
        "parallel_ceiling_after": math.nan,
    }
    text = report(figures)
    assert "after not measured (--quick)" in text and "nan" not in text
    section = harness.Section(name="training")
    harness._parse(section, text, harness.TRAINING_PATTERNS)
    assert not section.notes  # every figure found
    assert section.figures[
        "2 busy processes / 1 (machine's ceiling, before)"
    ].values == [2.09]
    assert section.figures["2 workers (local SGD) / 1 worker"].values == [1.5]
    assert section.figures["2 workers (DDP) / 1 worker"].values == [0.62]

    full = report({**figures, "parallel_ceiling_after": 1.98})
    assert "2.09x before, 1.98x after" in full


def test_drift_note_names_the_sizes_the_script_printed() -> None:
    """The drift section's note comes from the script's own line, quick or full."""
    from bench.harness import DRIFT_SIZES

    match = DRIFT_SIZES.search(
        "Ingestion (1000 pairs)\nDrift, 20,000 rows x 20 columns vs 50,000\n"
    )
    assert match is not None and match.groups() == ("20,000", "20", "50,000")
