"""Shared fixtures: a small real dataset, prepared and trained once per session."""

from __future__ import annotations

import os
from pathlib import Path

# tfmot needs Keras 2; this must be set before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest
from plumb_testing import quick_config

from components.common.config import PlumbConfig
from components.preprocess.lib import PreparedData, prepare, write_prepared
from components.preprocess.split import SPLITS


@pytest.fixture(scope="session")
def breast_cancer_config() -> PlumbConfig:
    return quick_config()


@pytest.fixture(scope="session")
def prepared_breast_cancer(breast_cancer_config: PlumbConfig) -> PreparedData:
    return prepare(breast_cancer_config)


@pytest.fixture(scope="session")
def preprocessed_dir(
    tmp_path_factory: pytest.TempPathFactory, prepared_breast_cancer: PreparedData
) -> Path:
    """A folder holding the four splits as Parquet and the preprocessor directory."""
    root = tmp_path_factory.mktemp("preprocessed")
    write_prepared(
        prepared_breast_cancer,
        split_paths={name: str(root / f"{name}.parquet") for name in SPLITS},
        preprocessor_dir=str(root / "preprocessor"),
    )
    return root


@pytest.fixture(scope="session")
def trained_model_dir(
    tmp_path_factory: pytest.TempPathFactory,
    breast_cancer_config: PlumbConfig,
    prepared_breast_cancer: PreparedData,
    preprocessed_dir: Path,
) -> Path:
    """A PyTorch MLP trained on breast-cancer and exported as plumb's model directory."""
    from components.train.lib import train_and_export

    model_dir = tmp_path_factory.mktemp("model") / "model"
    train_and_export(
        breast_cancer_config.training,
        train=prepared_breast_cancer.splits["train"],
        validation=prepared_breast_cancer.splits["validation"],
        preprocessor_dir=preprocessed_dir / "preprocessor",
        model_dir=model_dir,
    )
    return model_dir
