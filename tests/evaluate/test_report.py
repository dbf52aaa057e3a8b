"""The HTML report renders every section, offline, and the verdict JSON keeps its keys."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from components.common.config import EvaluationConfig
from components.common.errors import GateFailedError
from components.deploy.lib import check_verdict
from components.evaluate.lib import evaluate_model, write_outputs
from components.evaluate.report import SECTION_IDS, render_report

FAST = {"importance_repeats": 1, "explained_rows": 4}


class _Collector(HTMLParser):
    """Collects element ids and every URL-bearing attribute of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.urls: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if name in ("src", "href") and value:
                self.urls.append(value)


@pytest.fixture(scope="module")
def carrier_evaluation(
    tmp_path_factory: pytest.TempPathFactory, fit_model_dir, grouped_frame
):
    """A binary model on synthetic flights-like rows, with a baseline and an incumbent."""
    # Module fixtures run before conftest's per-test one-thread limit.
    with threadpool_limits(limits=1):
        return _carrier_evaluation(tmp_path_factory, fit_model_dir, grouped_frame)


def _carrier_evaluation(
    tmp_path_factory: pytest.TempPathFactory, fit_model_dir, grouped_frame
):
    frame = grouped_frame(2400, seed=5)
    root = tmp_path_factory.mktemp("report")
    features = ["signal", "noise_a", "noise_b", "carrier"]
    common = {
        "target": "delayed",
        "task": "binary",
        "positive_class": "yes",
    }
    candidate = fit_model_dir(
        frame.iloc[:1400], features=features, model_dir=root / "candidate", **common
    )
    baseline = fit_model_dir(
        frame.iloc[:300], features=features, model_dir=root / "baseline", **common
    )
    # The incumbent learnt shuffled labels, so the candidate beats it clearly.
    shuffled = frame.iloc[:1400].assign(
        delayed=np.random.default_rng(0).permutation(frame["delayed"].iloc[:1400])
    )
    incumbent = fit_model_dir(
        shuffled, features=features, model_dir=root / "incumbent", **common
    )
    config = EvaluationConfig.model_validate(
        {
            **FAST,
            "incumbent_model_dir": str(incumbent),
            "threshold_strategy": "youden",
            "gate": {"incumbent": {"max_regression": {"roc_auc": 0.0}}},
        }
    )
    return evaluate_model(
        candidate,
        frame.iloc[1800:],
        config,
        validation=frame.iloc[1400:1800],
        baseline_model_dir=baseline,
        slice_column="carrier",
    )


def test_report_has_every_section_and_needs_no_network(carrier_evaluation) -> None:
    """Each section id is present, charts are inline SVG, nothing loads from outside."""
    page = render_report(carrier_evaluation, title="flights <test>")
    parser = _Collector()
    parser.feed(page)
    assert set(SECTION_IDS) <= set(parser.ids)
    assert parser.urls == []
    assert "script" not in parser.tags
    assert parser.tags.count("svg") >= 6  # ROC, PR, calibration, 2 importance, slices
    assert "flights &lt;test&gt;" in page


def test_report_states_verdict_deltas_and_the_bad_slice(carrier_evaluation) -> None:
    """The headline verdict, the delta columns and the flagged carrier are visible."""
    page = render_report(carrier_evaluation, title="t")
    assert carrier_evaluation.verdict.passed is True
    assert "Gate PASSED" in page
    assert "<th>candidate - baseline</th>" in page
    assert "<th>candidate - incumbent</th>" in page
    assert "decision_threshold (youden)" in page
    # ZZ's labels are noise: its row is flagged, the others are not.
    flagged = re.findall(r"<tr class='flag'><td>(\w+)</td>", page)
    assert flagged == ["ZZ"]
    assert "predicted no" in page and "actual yes" in page


def test_failed_gate_reads_as_failed_everywhere(
    carrier_evaluation, tmp_path: Path
) -> None:
    """A failed verdict says FAILED in the report, false in JSON, and deploy refuses it."""
    carrier_evaluation.verdict.passed = False
    carrier_evaluation.verdict.reasons.append("FAIL: crafted")
    try:
        write_outputs(
            carrier_evaluation,
            verdict_path=tmp_path / "verdict.json",
            report_path=tmp_path / "report.html",
            title="t",
        )
    finally:
        carrier_evaluation.verdict.passed = True
        carrier_evaluation.verdict.reasons.pop()
    verdict = json.loads((tmp_path / "verdict.json").read_text())
    assert verdict["passed"] is False
    assert {"passed", "reasons", "metrics", "checks", "comparisons"} <= set(verdict)
    assert verdict["metrics"]["roc_auc"] == carrier_evaluation.metrics["roc_auc"]
    assert {s["value"] for s in verdict["slices"]} == {"AA", "BB", "CC", "ZZ"}
    assert "Gate FAILED" in (tmp_path / "report.html").read_text()
    with pytest.raises(GateFailedError, match="crafted"):
        check_verdict(tmp_path / "verdict.json")


def test_regression_report_shows_predicted_against_actual(
    tmp_path: Path, fit_model_dir
) -> None:
    """A regression report has metrics, a scatter, importance and slices, no ROC."""
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(
        {
            "x": rng.normal(size=600),
            "region": rng.choice(["north", "south"], size=600),
        }
    )
    frame["y"] = 2 * frame["x"] + rng.normal(scale=0.2, size=600)
    model_dir = fit_model_dir(
        frame.iloc[:400],
        features=["x", "region"],
        target="y",
        task="regression",
        model_dir=tmp_path / "model",
        estimator=HistGradientBoostingRegressor(max_iter=40, random_state=0),
    )
    evaluation = evaluate_model(
        model_dir,
        frame.iloc[400:],
        EvaluationConfig.model_validate(FAST),
        slice_column="region",
    )
    assert evaluation.metrics["r2"] > 0.9
    page = render_report(evaluation, title="regression")
    parser = _Collector()
    parser.feed(page)
    assert {"verdict", "metrics", "curves", "feature-importance", "slices"} <= set(
        parser.ids
    )
    assert "Predicted against actual" in page
    assert "confusion-matrix" not in parser.ids
    assert "<td>rmse</td>" in page
