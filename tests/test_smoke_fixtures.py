"""The shared fixtures produce a usable model."""

from pathlib import Path

import numpy as np

from components.common.model_runtime import load_model


def test_trained_model_scores_test_split(
    trained_model_dir: Path, prepared_breast_cancer
) -> None:
    """A model trained by the fixture ranks breast-cancer test rows well (AUC > 0.95)."""
    from sklearn.metrics import roc_auc_score

    model = load_model(trained_model_dir)
    test = prepared_breast_cancer.splits["test"]
    scores = model.predict(test)
    assert np.all((scores >= 0) & (scores <= 1))
    assert roc_auc_score(model.schema.labels(test), scores) > 0.95
