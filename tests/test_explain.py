"""Attributions on raw columns, shared by evaluation and serving."""

from pathlib import Path

import numpy as np

from components.common.model_runtime import load_model
from components.evaluate.explain import baseline_row, explain_matrix, explain_rows


def test_baseline_row_has_zero_attribution(trained_model_dir: Path) -> None:
    """A row equal to the baseline gets exactly zero attribution for every column."""
    import pandas as pd

    model = load_model(trained_model_dir)
    row = pd.DataFrame([baseline_row(model.transform)])
    assert np.allclose(explain_matrix(model, row), 0.0, atol=1e-9)


def test_explain_rows_names_every_raw_column(
    trained_model_dir: Path, prepared_breast_cancer
) -> None:
    """Each row gets one finite attribution per raw feature column, not per encoded one."""
    model = load_model(trained_model_dir)
    rows = explain_rows(model, prepared_breast_cancer.splits["test"].head(5))
    assert len(rows) == 5
    assert list(rows[0]) == model.transform.input_columns
    assert all(np.isfinite(list(r.values())).all() for r in rows)
    assert any(abs(v) > 1e-4 for r in rows for v in r.values())
