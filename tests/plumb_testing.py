"""Helpers test modules import by name (`from plumb_testing import quick_config`).

A module of its own, not `conftest`: with several conftest.py files on the path, `import
conftest` finds whichever was imported first.
"""

from __future__ import annotations

from components.common.config import PlumbConfig


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
