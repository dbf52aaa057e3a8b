"""Fixtures of the reliability tests: the helpers module on the path, model rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The suite runs with --import-mode=importlib, which puts no test folder on sys.path;
# this one holds reliability_helpers, shared by the reliability test modules.
sys.path.insert(0, str(Path(__file__).parent))

from components.preprocess.lib import PreparedData


@pytest.fixture(scope="module")
def good_rows(prepared_breast_cancer: PreparedData) -> list[list[float]]:
    """Twenty test-split rows as lists in schema column order."""
    schema = prepared_breast_cancer.schema
    frame = prepared_breast_cancer.splits["test"][schema.feature_names].head(20)
    return frame.values.tolist()


@pytest.fixture(scope="module")
def feature_names(prepared_breast_cancer: PreparedData) -> list[str]:
    return prepared_breast_cancer.schema.feature_names
