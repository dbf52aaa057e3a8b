"""Helpers test modules import by name (`from plumb_testing import quick_config`).

A module of its own, not `conftest`: with several conftest.py files on the path, `import
conftest` finds whichever was imported first.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from components.common.config import PlumbConfig

if TYPE_CHECKING:
    from components.preprocess.lib import PreparedData


def quick_config(**sections: dict) -> PlumbConfig:
    """A breast-cancer config that trains in about a second."""
    raw: dict = {
        "data": {"dataset": "breast-cancer"},
        "training": {
            "epochs": 30,
            "batch_size": 64,
            "hidden_units": [16],
            "workers": 1,
        },
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return PlumbConfig.model_validate(raw)


def prepare_and_train(config: PlumbConfig, root: Path) -> tuple[PreparedData, Path]:
    """Prepare the config's data into `root` (the splits as Parquet, `preprocessor/`),
    train its network into `root/model`; return the prepared data and the model dir."""
    from components.preprocess.lib import prepare, write_prepared
    from components.preprocess.split import SPLITS
    from components.train.lib import train_and_export

    prepared = prepare(config)
    write_prepared(
        prepared,
        split_paths={name: str(root / f"{name}.parquet") for name in SPLITS},
        preprocessor_dir=str(root / "preprocessor"),
    )
    train_and_export(
        config.training,
        train=prepared.splits["train"],
        validation=prepared.splits["validation"],
        preprocessor_dir=root / "preprocessor",
        model_dir=root / "model",
    )
    return prepared, root / "model"


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """One sample from Prometheus text format, or None."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(key) == value for key, value in labels.items()
            ):
                return float(sample.value)
    return None
