"""The preprocess step: load, validate, split, and fit the transform."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from components.common.artifacts import SCHEMA_FILE, TRANSFORM_FILE, write_table
from components.common.config import PlumbConfig
from components.preprocess.datasets import Table, load_table
from components.preprocess.schema import Schema, infer_schema, validate_frame
from components.preprocess.split import SPLITS, split_frame
from components.preprocess.transform import Transform

logger = logging.getLogger(__name__)


@dataclass
class PreparedData:
    """Splits, schema and transform, before they are written anywhere."""

    table: Table
    schema: Schema
    splits: dict
    transform: Transform


def prepare(config: PlumbConfig) -> PreparedData:
    """Load the configured data, infer its schema, split it, and fit the transform.

    Raises:
        DataError: The data cannot be used (see `load_table` and `infer_schema`).
    """
    table, schema, splits = _load_and_split(config)
    # The schema's categories and ranges describe training data only.
    schema = infer_schema(
        splits["train"],
        features=table.features,
        target=table.target,
        task=table.task,
        positive_class=schema.positive_class,
    )
    transform = Transform.fit(splits["train"], schema)
    return PreparedData(table=table, schema=schema, splits=splits, transform=transform)


def check_data(config: PlumbConfig) -> Schema:
    """Run the checks of `prepare` that can fail (load, schema, split), no more.

    `plumb run` calls this in-process before the pipeline, so that bad data fails
    with one clear line rather than a task traceback; it skips what cannot fail on
    data that passed these checks (the training-split schema, the transform fit).

    Returns:
        The schema of the whole table.

    Raises:
        DataError: The data cannot be used (see `prepare`).
    """
    _, schema, _ = _load_and_split(config)
    return schema


def _load_and_split(config: PlumbConfig) -> tuple[Table, Schema, dict]:
    table = load_table(config.data)
    frame = table.frame
    dropped = int(frame[table.target].isna().sum())
    if dropped:
        logger.warning(
            "Dropped %d rows whose target %r is missing", dropped, table.target
        )
        frame = frame.loc[frame[table.target].notna()]

    schema = infer_schema(
        frame,
        features=table.features,
        target=table.target,
        task=table.task,
        positive_class=table.positive_class,
    )
    validate_frame(frame, schema)

    stratify = frame[table.target].astype(str) if table.task == "binary" else None
    splits = split_frame(
        frame,
        table.split,
        stratify=stratify if table.time_column is None else None,
        time_column=table.time_column,
    )
    return table, schema, splits


def write_prepared(
    prepared: PreparedData,
    *,
    split_paths: dict[str, str],
    preprocessor_dir: str,
) -> None:
    """Write the splits as Parquet and the schema and transform as JSON."""
    columns = [*prepared.schema.feature_names, prepared.schema.target]
    for name in SPLITS:
        write_table(prepared.splits[name][columns], split_paths[name])
    directory = Path(preprocessor_dir)
    directory.mkdir(parents=True, exist_ok=True)
    prepared.schema.save(directory / SCHEMA_FILE)
    prepared.transform.save(directory / TRANSFORM_FILE)
    logger.info(
        "Wrote %d features (%d encoded) to %s",
        len(prepared.schema.columns),
        prepared.transform.width,
        directory,
    )
