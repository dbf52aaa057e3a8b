"""The fitted feature transform, shared by training, evaluation and serving.

`Transform.fit` learns imputation values, scaling and category lists from the training
split; `Transform.apply` turns raw rows into the float32 matrix the network reads. The
fitted state is plain JSON (no pickle), and this one implementation runs everywhere a
model meets data, so training and serving cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.errors import SchemaError
from components.preprocess.schema import Schema, validate_frame

UNKNOWN = "<unknown>"
FORMAT_VERSION = 1
SCALED_LIMIT = 1e6
"""Bound on a scaled numeric value. Training rows never reach it (with population
scaling no value lies more than sqrt(rows - 1) deviations from the mean), so it only
changes absurd request values such as 1e300, which would otherwise overflow float32
and turn the model's output into NaN."""


@dataclass
class NumericStep:
    """Median imputation, then standard scaling."""

    name: str
    median: float
    mean: float
    scale: float


@dataclass
class CategoricalStep:
    """One-hot encoding with a final bucket for unseen and missing values."""

    name: str
    categories: list[str]


@dataclass
class Transform:
    """Fitted preprocessing: numeric columns first, then one-hot blocks."""

    numeric: list[NumericStep] = field(default_factory=list)
    categorical: list[CategoricalStep] = field(default_factory=list)

    @classmethod
    def fit(cls, frame: pd.DataFrame, schema: Schema) -> Transform:
        """Learn imputation, scaling and categories from the training rows."""
        validate_frame(frame, schema)
        numeric = []
        categorical = []
        for column in schema.columns:
            if column.kind == "numeric":
                values = pd.to_numeric(frame[column.name], errors="coerce")
                median = float(values.median()) if values.notna().any() else 0.0
                filled = values.fillna(median)
                std = float(filled.std(ddof=0))
                numeric.append(
                    NumericStep(
                        name=column.name,
                        median=median,
                        mean=float(filled.mean()),
                        scale=std if std > 0 else 1.0,
                    )
                )
            else:
                categorical.append(
                    CategoricalStep(
                        name=column.name, categories=list(column.categories)
                    )
                )
        return cls(numeric=numeric, categorical=categorical)

    @property
    def input_columns(self) -> list[str]:
        return [step.name for step in self.numeric] + [
            step.name for step in self.categorical
        ]

    @property
    def output_names(self) -> list[str]:
        names = [step.name for step in self.numeric]
        for step in self.categorical:
            names += [f"{step.name}={value}" for value in step.categories]
            names.append(f"{step.name}={UNKNOWN}")
        return names

    @property
    def width(self) -> int:
        return len(self.numeric) + sum(len(s.categories) + 1 for s in self.categorical)

    def apply(self, frame: pd.DataFrame) -> np.ndarray:
        """Turn raw rows into the model's float32 input matrix.

        Raises:
            SchemaError: A column is missing or a numeric column holds text.
        """
        missing = [name for name in self.input_columns if name not in frame.columns]
        if missing:
            raise SchemaError(
                f"missing column {missing[0]!r}; expected columns {self.input_columns}"
            )
        numeric = {
            step.name: self._numeric_values(frame[step.name], step)
            for step in self.numeric
        }
        codes = {
            step.name: _category_codes(frame[step.name], step.categories)
            for step in self.categorical
        }
        return self.encode(numeric, codes, rows=len(frame))

    def encode(
        self,
        numeric: Mapping[str, np.ndarray] | np.ndarray,
        codes: Mapping[str, np.ndarray],
        *,
        rows: int,
    ) -> np.ndarray:
        """Build the float32 matrix from parsed columns (the part `apply` shares).

        Args:
            numeric: Raw float64 values per numeric column, NaN where missing; or one
                `[rows, numeric columns]` matrix in the order of `self.numeric`.
            codes: Category index per categorical column, `len(categories)` for
                unseen or missing values (see `category_codes`).
            rows: Number of rows.
        """
        out = np.zeros((rows, self.width), dtype=np.float32)
        if self.numeric:
            medians, means, scales = self._numeric_parameters
            if isinstance(numeric, np.ndarray):
                values = numeric
            else:
                values = np.column_stack([numeric[step.name] for step in self.numeric])
            values = np.where(np.isnan(values), medians, values)
            with np.errstate(over="ignore"):  # clipped on the next line
                scaled = (values - means) / scales
            out[:, : len(self.numeric)] = np.clip(scaled, -SCALED_LIMIT, SCALED_LIMIT)
        offset = len(self.numeric)
        for step in self.categorical:
            out[np.arange(rows), offset + codes[step.name]] = 1.0
            offset += len(step.categories) + 1
        return out

    @cached_property
    def _numeric_parameters(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (
            np.array([step.median for step in self.numeric], dtype=np.float64),
            np.array([step.mean for step in self.numeric], dtype=np.float64),
            np.array([step.scale for step in self.numeric], dtype=np.float64),
        )

    @staticmethod
    def _numeric_values(series: pd.Series, step: NumericStep) -> np.ndarray:
        try:
            return pd.to_numeric(series, errors="raise").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        except (ValueError, TypeError) as err:
            raise SchemaError(f"column {step.name!r} must be numeric: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transform:
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"transform format_version {data.get('format_version')!r} is not "
                f"{FORMAT_VERSION}; re-run preprocessing with this plumb version"
            )
        return cls(
            numeric=[NumericStep(**step) for step in data["numeric"]],
            categorical=[CategoricalStep(**step) for step in data["categorical"]],
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Transform:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _category_codes(series: pd.Series, categories: list[str]) -> np.ndarray:
    # Values are compared as strings, as the schema recorded them; missing and unseen
    # values share the last (unknown) bucket.
    text = series.astype("string")
    codes = pd.Categorical(text, categories=categories).codes.astype(np.int64)
    codes[codes < 0] = len(categories)
    return codes


def category_codes(
    values: Sequence[str | None] | np.ndarray, categories: list[str]
) -> np.ndarray:
    """Category index of each already-text value; unseen and None get the unknown bucket.

    The same mapping as `apply` for values that are strings, without pandas; the
    model server calls it on validated request values.
    """
    lookup = {category: index for index, category in enumerate(categories)}
    unknown = len(categories)
    return np.fromiter(
        (lookup.get(value, unknown) for value in values),  # type: ignore[arg-type]
        dtype=np.int64,
        count=len(values),
    )
