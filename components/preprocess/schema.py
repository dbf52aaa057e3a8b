"""The schema of a training table: columns, kinds, categories and ranges.

`infer_schema` records it once at preprocessing; `validate_frame` checks any later table
(a user file, a serving batch, a monitoring window) against it. The schema travels with
the model as plain JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from components.common.errors import DataError, SchemaError

ColumnKind = Literal["numeric", "categorical"]

# A column whose non-missing values parse as numbers this often is numeric; the few that
# do not are typos ("12,5", "n/a") worth a clear error rather than a silent category.
NUMERIC_PARSE_SHARE = 0.95
MAX_CATEGORIES = 200
# Values sampled to recognise an obvious text column without parsing all of it.
TEXT_SAMPLE_ROWS = 1_000


@dataclass
class ColumnSchema:
    """One feature column as seen in the training data."""

    name: str
    kind: ColumnKind
    categories: list[str] = field(default_factory=list)
    minimum: float | None = None
    maximum: float | None = None
    missing_share: float = 0.0


@dataclass
class Schema:
    """The features, target and task of a training table."""

    columns: list[ColumnSchema]
    target: str
    task: str
    classes: list[str] = field(default_factory=list)
    positive_class: str | None = None

    @property
    def feature_names(self) -> list[str]:
        return [column.name for column in self.columns]

    def column(self, name: str) -> ColumnSchema:
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(name)

    def labels(self, frame: pd.DataFrame) -> np.ndarray:
        """Return the target as float32: 1/0 for `binary`, the value for `regression`."""
        target = frame[self.target]
        if self.task == "regression":
            return pd.to_numeric(target).to_numpy(dtype=np.float32)
        return (target.astype(str) == self.positive_class).to_numpy(dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Schema:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schema:
        columns = [ColumnSchema(**column) for column in data["columns"]]
        return cls(**{**data, "columns": columns})


def infer_schema(
    frame: pd.DataFrame,
    *,
    features: list[str],
    target: str,
    task: str,
    positive_class: str | None = None,
) -> Schema:
    """Infer column kinds, categories and ranges, and check the target.

    Raises:
        DataError: The target is all missing, has one class, or a column mixes numbers
            with text.
    """
    columns = [_infer_column(frame[name], name=name) for name in features]
    classes, positive = _check_target(
        frame[target], task=task, positive_class=positive_class
    )
    return Schema(
        columns=columns,
        target=target,
        task=task,
        classes=classes,
        positive_class=positive,
    )


def _infer_column(series: pd.Series, *, name: str) -> ColumnSchema:
    missing_share = float(series.isna().mean()) if len(series) else 0.0
    present = series.dropna()
    if pd.api.types.is_bool_dtype(series) or not _is_numeric(present, name=name):
        counts = present.astype(str).value_counts()
        categories = sorted(counts.index[:MAX_CATEGORIES].tolist())
        return ColumnSchema(
            name=name,
            kind="categorical",
            categories=categories,
            missing_share=missing_share,
        )
    values = pd.to_numeric(present)
    return ColumnSchema(
        name=name,
        kind="numeric",
        minimum=float(values.min()) if len(values) else None,
        maximum=float(values.max()) if len(values) else None,
        missing_share=missing_share,
    )


def _is_numeric(present: pd.Series, *, name: str) -> bool:
    if pd.api.types.is_numeric_dtype(present):
        return True
    if _clearly_text(present):
        return False
    parsed = pd.to_numeric(present, errors="coerce")
    share = float(parsed.notna().mean()) if len(present) else 0.0
    if share >= NUMERIC_PARSE_SHARE and share < 1.0:
        bad = present[parsed.isna()]
        raise DataError(
            f"column {name!r} is numeric but holds text: {bad.iloc[0]!r} at row "
            f"{bad.index[0]}; fix or blank those cells"
        )
    return share == 1.0 and len(present) > 0


def _clearly_text(present: pd.Series) -> bool:
    """Whether a seeded sample of the values holds no number at all.

    Parsing every value of a text column costs about 0.3 s per 300,000 rows; a column
    whose sample parses nowhere cannot reach `NUMERIC_PARSE_SHARE` (for a column that
    did, a sample of 1,000 missing every number has probability below 0.05**1000).
    """
    if len(present) <= TEXT_SAMPLE_ROWS:
        return False
    sample = present.sample(n=TEXT_SAMPLE_ROWS, random_state=0)
    return bool(pd.to_numeric(sample, errors="coerce").isna().all())


def _check_target(
    target: pd.Series, *, task: str, positive_class: str | None
) -> tuple[list[str], str | None]:
    present = target.dropna()
    if present.empty:
        raise DataError(
            f"target column {target.name!r} is all missing; choose a column with values"
        )
    if task == "regression":
        if pd.to_numeric(present, errors="coerce").isna().any():
            example = present[pd.to_numeric(present, errors="coerce").isna()].iloc[0]
            raise DataError(
                f"regression target {target.name!r} holds text ({example!r}); "
                "use a numeric target or set data.task: binary"
            )
        return [], None

    classes = sorted(present.astype(str).unique().tolist())
    if len(classes) < 2:
        raise DataError(
            f"target column {target.name!r} has a single class {classes[0]!r}; "
            "binary classification needs two"
        )
    if positive_class is not None:
        if positive_class not in classes:
            raise DataError(
                f"positive class {positive_class!r} not found in target {target.name!r}; "
                f"its values are {classes[:10]}"
            )
        return classes, positive_class
    if len(classes) > 2:
        raise DataError(
            f"target column {target.name!r} has {len(classes)} classes "
            f"({classes[:10]}); set data.positive_class for one-vs-rest, or "
            "data.task: regression"
        )
    return classes, classes[-1]


def validate_frame(frame: pd.DataFrame, schema: Schema) -> None:
    """Check that a table has the schema's columns with values of the right kind.

    Raises:
        SchemaError: A column is missing, or a numeric column holds text or infinity.
    """
    missing = [name for name in schema.feature_names if name not in frame.columns]
    if missing:
        raise SchemaError(
            f"missing column {missing[0]!r}; expected columns {schema.feature_names}"
        )
    for column in schema.columns:
        if column.kind != "numeric":
            continue
        series = frame[column.name]
        parsed = pd.to_numeric(series, errors="coerce")
        bad = series.notna() & parsed.isna()
        if bad.any():
            raise SchemaError(
                f"column {column.name!r} must be numeric, got "
                f"{series[bad].iloc[0]!r} at row {series[bad].index[0]}"
            )
        values = parsed.to_numpy(dtype="float64", na_value=np.nan)
        if np.isinf(values).any():
            raise SchemaError(
                f"column {column.name!r} holds infinity at row "
                f"{int(np.argmax(np.isinf(values)))}; send a finite number or null"
            )
