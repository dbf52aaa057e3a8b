"""The selection rule and the report, on fixed candidates and on a real compress run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from components.common.config import CompressionConfig
from components.compress.lib import CompressionPlan, build_report, compress_model
from components.compress.measure import Candidate, select_candidate
from components.compress.report import render_html


@pytest.fixture(scope="session")
def breast_cancer_compression(
    tmp_path_factory: pytest.TempPathFactory,
    trained_model_dir: Path,
    prepared_breast_cancer,
) -> tuple[dict[str, Any], Path]:
    """Every method on the breast-cancer MLP: the report and the output directory."""
    root = tmp_path_factory.mktemp("compress")
    config = CompressionConfig(
        sparsity=0.6,
        fine_tune_epochs=2,
        calibration_rows=128,
        distillation={"hidden_units": [4], "epochs": 15},
        latency_repeats=3,
        batch_rows=200,
    )
    report = compress_model(
        config,
        model_dir=trained_model_dir,
        train=prepared_breast_cancer.splits["train"],
        validation=prepared_breast_cancer.splits["validation"],
        work_dir=root / "work",
        output_dir=root / "output",
    )
    return report, root / "output"


def _candidate(name: str, size: int, latency_ms: float, metric: float) -> Candidate:
    return Candidate(
        name=name,
        model_dir=f"/models/{name}",
        format="onnx",
        size_bytes=size,
        gzip_size_bytes=size // 2,
        single_row_latency_ms=latency_ms,
        batch_latency_ms=latency_ms * 100,
        batch_rows=1000,
        metric_name="roc_auc",
        metric=metric,
        details={},
    )


def _fixture() -> list[Candidate]:
    return [
        _candidate("float32", 40_000, 0.040, 0.900),
        _candidate("int8-dynamic", 15_000, 0.050, 0.899),  # in budget, not smallest
        _candidate("structured+int8", 8_000, 0.030, 0.896),  # smallest in budget
        _candidate("distilled+int8", 4_000, 0.020, 0.880),  # smallest, over budget
        _candidate("int8-static", 14_000, 0.025, 0.8951),  # fastest in budget
    ]


PLAN = CompressionPlan(
    framework="pytorch",
    model="mlp",
    task="binary",
    methods=["quantization"],
    quantization=["dynamic"],
)


def test_selects_smallest_within_budget() -> None:
    """Size objective: the smallest candidate whose drop is within budget wins."""
    candidates = _fixture()
    best = select_candidate(candidates, max_metric_drop=0.005, objective="size")
    assert best.name == "structured+int8"
    assert [c.eligible for c in candidates] == [True, True, True, False, True]
    assert candidates[2].size_ratio == pytest.approx(5.0)
    assert candidates[3].metric_drop == pytest.approx(0.02)


def test_selects_fastest_within_budget() -> None:
    """Latency objective: the fastest single-row candidate within budget wins."""
    best = select_candidate(_fixture(), max_metric_drop=0.005, objective="latency")
    assert best.name == "int8-static"


def test_budget_nobody_meets_keeps_float() -> None:
    """Every compressed candidate drops more than the budget: float stays, and says so."""
    candidates = _fixture()
    best = select_candidate(candidates, max_metric_drop=0.0005, objective="size")
    report = build_report(
        candidates, config=CompressionConfig(max_metric_drop=0.0005), plan=PLAN
    )
    assert best.name == "float32"
    assert report["selected"] == "float32"
    assert report["none_qualified"] is True
    assert "kept the float model" in report["summary"]
    assert [c["selected"] for c in report["candidates"]] == [True] + [False] * 4


def test_candidate_that_improves_passes_a_zero_budget() -> None:
    """A negative drop (better than float) is within any budget, even zero."""
    candidates = [*_fixture(), _candidate("pruned", 40_000, 0.04, 0.905)]
    candidates.append(_candidate("pruned+int8", 12_000, 0.05, 0.9001))
    best = select_candidate(candidates, max_metric_drop=0.0, objective="size")
    assert best.name == "pruned+int8"


def test_compress_run_copies_the_selected_model(breast_cancer_compression) -> None:
    """A real run measures every candidate and ships exactly the selected directory."""
    report, output_dir = breast_cancer_compression
    names = [c["name"] for c in report["candidates"]]
    assert names[0] == "float32"
    for name in ("pruned", "structured", "distilled", "int8-dynamic", "int8-static"):
        assert name in names
    assert "structured+int8-static" in names
    selected = next(c for c in report["candidates"] if c["selected"])
    assert selected["name"] == report["selected"]
    assert selected["metric_drop"] <= report["max_metric_drop"] + 1e-9
    in_budget = [c for c in report["candidates"] if c["eligible"]]
    assert selected["size_bytes"] == min(c["size_bytes"] for c in in_budget)
    shipped = (output_dir / "model.onnx").read_bytes()
    assert shipped == (Path(selected["model_dir"]) / "model.onnx").read_bytes()
    for candidate in report["candidates"]:
        assert candidate["single_row_latency_ms"] > 0
        assert candidate["gzip_size_bytes"] > 0
    pruned = next(c for c in report["candidates"] if c["name"] == "pruned")
    float32 = report["candidates"][0]
    # Zeros compress: the pruned file is as large but its gzip is clearly smaller.
    assert pruned["size_bytes"] == pytest.approx(float32["size_bytes"], rel=0.02)
    assert pruned["gzip_size_bytes"] < 0.85 * float32["gzip_size_bytes"]
    json.dumps(report)


def test_html_report_is_self_contained(breast_cancer_compression) -> None:
    """The HTML page holds an inline SVG plot, every candidate, and no network links."""
    report, _ = breast_cancer_compression
    page = render_html(report)
    svg = page[page.index("<svg") : page.index("</svg>") + len("</svg>")]
    plot = ElementTree.fromstring(svg)  # well-formed XML
    circles = plot.findall("{http://www.w3.org/2000/svg}circle")
    assert len(circles) == len(report["candidates"])
    for candidate in report["candidates"]:
        assert candidate["name"] in page
    links = page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "http://" not in links and "https://" not in links


def test_disabled_compression_ships_the_float_model(
    tmp_path: Path, trained_model_dir: Path, prepared_breast_cancer
) -> None:
    """`enabled: false` measures only the float model and copies it unchanged."""
    report = compress_model(
        CompressionConfig(enabled=False, latency_repeats=2),
        model_dir=trained_model_dir,
        train=prepared_breast_cancer.splits["train"],
        validation=prepared_breast_cancer.splits["validation"],
        work_dir=tmp_path / "work",
        output_dir=tmp_path / "output",
    )
    assert [c["name"] for c in report["candidates"]] == ["float32"]
    assert report["selected"] == "float32" and not report["none_qualified"]
    assert (tmp_path / "output" / "model.onnx").read_bytes() == (
        trained_model_dir / "model.onnx"
    ).read_bytes()
