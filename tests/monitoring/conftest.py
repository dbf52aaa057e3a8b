"""Fixtures of the monitor tests: a small flights model and rows by month."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path;
# this one holds monitor_helpers, shared by the monitor's test modules.
sys.path.insert(0, str(Path(__file__).parent))
from monitor_helpers import FlightsModel
from plumb_testing import prepare_and_train

from components.common.config import PlumbConfig

FLIGHTS_ROWS = 8000


@pytest.fixture(scope="session")
def flights_model(tmp_path_factory: pytest.TempPathFactory) -> FlightsModel:
    """A 2-epoch MLP on 8,000 flights rows; the latest months are held out."""
    from components.preprocess.datasets import load_table

    config = PlumbConfig.model_validate(
        {
            "data": {
                "dataset": "flights",
                "max_rows": FLIGHTS_ROWS,
                "split": {"production_fraction": 0.2},
            },
            "training": {"epochs": 2, "hidden_units": [16], "batch_size": 512},
        }
    )
    prepared, model_dir = prepare_and_train(config, tmp_path_factory.mktemp("flights"))
    train = prepared.splits["train"]
    everything = load_table(config.data.model_copy(update={"max_rows": None})).frame
    fresh = everything.loc[everything["month"].isin(train["month"].unique())].sample(
        n=6000, random_state=7
    )
    return FlightsModel(
        model_dir=model_dir,
        features=prepared.schema.feature_names,
        training_months=fresh.reset_index(drop=True),
        distant_months=prepared.splits["production"].reset_index(drop=True),
    )
