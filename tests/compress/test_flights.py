"""Compression on a small slice of flights: a wide one-hot input, a [64, 32] MLP."""

from __future__ import annotations

from pathlib import Path

import pytest
from plumb_testing import prepare_and_train

from components.common.config import CompressionConfig, PlumbConfig
from components.compress.lib import compress_model


@pytest.mark.slow
def test_structured_pruning_plus_int8_is_four_times_smaller(tmp_path: Path) -> None:
    """Structured pruning + static int8 serves a >= 4x smaller file within 0.01 AUC."""
    config = PlumbConfig.model_validate(
        {
            "data": {"dataset": "flights", "max_rows": 6000},
            "training": {"epochs": 3, "hidden_units": [64, 32]},
        }
    )
    prepared, _ = prepare_and_train(config, tmp_path)

    report = compress_model(
        CompressionConfig(
            methods=["structured_pruning", "quantization"],
            fine_tune_epochs=1,
            calibration_rows=256,
            max_metric_drop=0.01,
            latency_repeats=3,
        ),
        model_dir=tmp_path / "model",
        train=prepared.splits["train"],
        validation=prepared.splits["validation"],
        work_dir=tmp_path / "work",
        output_dir=tmp_path / "output",
    )

    by_name = {c["name"]: c for c in report["candidates"]}
    assert by_name["structured"]["details"]["hidden_units"] == [32, 16]
    combined = by_name["structured+int8-static"]
    # Weights: 126x32 + 32x16 + 16 int8 bytes vs 126x64 + 64x32 + 32 float32 bytes is
    # ~8.9x; graph overhead (names, scales) brings the file to ~5x.
    assert combined["size_ratio"] >= 4.0
    # int8 alone cannot reach 4x on this graph: weights 4x, overhead on top.
    assert by_name["int8-static"]["size_ratio"] < 4.0
    # Static int8 of the same network keeps its ranking: ROC AUC within 0.005.
    assert abs(by_name["int8-static"]["metric_drop"]) <= 0.005
    assert report["selected"] != "float32" or report["none_qualified"]
