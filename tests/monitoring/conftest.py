"""Fixtures of the monitor tests: a small flights model and rows by month."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path;
# this one holds monitor_helpers, shared by the monitor's test modules.
sys.path.insert(0, str(Path(__file__).parent))
from monitor_helpers import FlightsModel

from components.common.config import PlumbConfig
from components.preprocess.lib import prepare, write_prepared
from components.preprocess.split import SPLITS

FLIGHTS_ROWS = 8000


@pytest.fixture(scope="session")
def flights_model(tmp_path_factory: pytest.TempPathFactory) -> FlightsModel:
    """A 2-epoch MLP on 8,000 flights rows; the latest months are held out."""
    from components.preprocess.datasets import load_table
    from components.train.lib import train_and_export

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
    prepared = prepare(config)
    root = tmp_path_factory.mktemp("flights")
    write_prepared(
        prepared,
        split_paths={name: str(root / f"{name}.parquet") for name in SPLITS},
        preprocessor_dir=str(root / "preprocessor"),
    )
    model_dir = root / "model"
    train_and_export(
        config.training,
        train=prepared.splits["train"],
        validation=prepared.splits["validation"],
        preprocessor_dir=root / "preprocessor",
        model_dir=model_dir,
    )
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
