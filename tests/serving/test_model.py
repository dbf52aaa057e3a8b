"""PlumbModel outside the server: pickling for kserve's spawned workers."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import numpy as np

from components.preprocess.lib import PreparedData
from components.serving.model import PlumbModel


def test_pickled_model_reloads_and_predicts_the_same(
    trained_model_dir: Path, prepared_breast_cancer: PreparedData
) -> None:
    """A loaded model survives pickling (as `--workers > 1` needs) and answers alike."""
    model = PlumbModel("m", trained_model_dir)
    model.load()
    schema = prepared_breast_cancer.schema
    rows = prepared_breast_cancer.splits["test"][schema.feature_names].head(5)
    payload = {"instances": rows.values.tolist()}

    copy = pickle.loads(pickle.dumps(model))

    assert copy.ready and copy.runtime is not model.runtime
    original = asyncio.run(model.predict(payload))["predictions"]
    restored = asyncio.run(copy.predict(payload))["predictions"]
    np.testing.assert_array_equal(
        [p["probability"] for p in original], [p["probability"] for p in restored]
    )
