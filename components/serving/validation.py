"""Turn a request body into checked rows of raw feature values.

The model server accepts rows in two shapes: V1 `instances` (lists in schema column
order, or objects keyed by column name) and V2 open-inference `inputs` (one tensor per
column). Both end here, as `ParsedRows` (numpy arrays per schema feature, ready for
`Transform.encode` without pandas), after every check a training schema allows:
column names, width, value types, missing values and infinities, batch size. A failed
check raises `SchemaError` naming the field, which the predictor maps to HTTP 400; a
batch over the row cap raises `RequestTooLargeError` (HTTP 413).

The checks are columnar. Numeric values (list rows of an all-numeric schema, or all
numeric columns of V2 tensors and object rows) are flattened once and converted in one
pyarrow call that is also the type check (`finite_number_matrix`); V2 binary tensors are
checked as whole arrays. Only a batch that fails a check is walked value by value, to
name the field and row. A V2 request may also send the already transformed matrix
(`parse_feature_matrix`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from components.common.errors import SchemaError
from components.preprocess.schema import ColumnSchema, Schema
from components.preprocess.transform import SCALED_LIMIT
from components.serving.errors import RequestTooLargeError

FEATURES_INPUT = "features"
"""V2 input name of the already transformed matrix (the ONNX model's own input)."""

# Up to this many values a request's numbers convert without pyarrow (see
# `finite_number_matrix`); the measured break-even is 250-500 values.
_SMALL_BATCH_VALUES = 256

V2_NUMERIC_DATATYPES = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64"}
    | {"UINT8", "UINT16", "UINT32", "UINT64"}
)


@dataclass
class ParsedRows:
    """Checked request rows: float64 per numeric column (NaN missing), text or None
    per categorical column."""

    numeric: Mapping[str, np.ndarray]
    categorical: dict[str, np.ndarray]
    rows: int
    matrix: np.ndarray | None = None
    """Every column numeric: all values as one float64 matrix in schema order (the
    `numeric` arrays are its columns)."""

    def to_frame(self, schema: Schema) -> pd.DataFrame:
        """The rows as a raw table in schema column order (for `explain_rows`)."""
        data = {**self.numeric, **self.categorical}
        return pd.DataFrame({name: data[name] for name in schema.feature_names})


def parse_instances(instances: Any, schema: Schema, *, max_rows: int) -> ParsedRows:
    """Check V1 `instances` and return them as a raw feature table.

    Args:
        instances: The decoded `instances` value: a list of lists (schema column
            order) or a list of objects keyed by column name.
        schema: The training schema.
        max_rows: The most rows one request may carry.

    Raises:
        SchemaError: The rows do not fit the schema; the message names the field.
    """
    _check_batch(instances, field="instances", max_rows=max_rows)
    row_types = set(map(type, instances))
    if row_types == {list}:
        _check_width(instances, schema)
        fast = _number_rows(instances, schema)
        if fast is not None:
            return fast
        columns: Mapping[str, Sequence[Any]] = dict(
            zip(schema.feature_names, zip(*instances, strict=True), strict=True)
        )
    elif row_types == {dict}:
        columns = _dict_columns(instances, schema)
    else:
        raise SchemaError(
            "each of 'instances' must be a list of values in schema column order or "
            f"an object keyed by column name, got {_type_names(row_types)}; "
            f"columns are {schema.feature_names}"
        )
    return _parse_columns(columns, schema, rows=len(instances))


def parse_tensors(
    tensors: Sequence[tuple[str, str, list[int], Any]],
    schema: Schema,
    *,
    max_rows: int,
) -> ParsedRows:
    """Check V2 input tensors (one per column) and return them as a raw feature table.

    Args:
        tensors: `(name, datatype, shape, values)` per input, `values` flat: a list
            (JSON) or a 1-D numpy array (binary tensor data).
        schema: The training schema.
        max_rows: The most rows one request may carry.

    Raises:
        SchemaError: The tensors do not fit the schema; the message names the input.
    """
    if not tensors:
        raise SchemaError(
            f"'inputs' is empty; send one tensor per column: {schema.feature_names}"
        )
    expected = set(schema.feature_names)
    names = [name for name, *_ in tensors]
    _check_names(names, expected=expected, schema=schema, where="inputs")
    columns: dict[str, Sequence[Any]] = {}
    rows: int | None = None
    for name, datatype, shape, values in tensors:
        column = schema.column(name)
        _check_datatype(name, datatype=datatype, column=column)
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise SchemaError(
                f"input {name!r} has shape {shape}; send shape [rows] or [rows, 1]"
            )
        if rows is None:
            _check_batch(values, field=f"input {name!r}", max_rows=max_rows)
            rows = len(values)
        elif len(values) != rows:
            raise SchemaError(
                f"input {name!r} has {len(values)} rows but {names[0]!r} has {rows}; "
                "every input needs the same number of rows"
            )
        columns[name] = values
    return _parse_columns(columns, schema, rows=rows or 0)


def parse_feature_matrix(
    values: Any, *, datatype: str, shape: list[int], width: int, max_rows: int
) -> np.ndarray:
    """Check a V2 `features` tensor: rows already transformed, as the model reads them.

    Args:
        values: Flat values: a list (JSON) or a 1-D numpy array (binary tensor data).
        datatype: The tensor's V2 datatype; FP32 or FP64.
        shape: The declared shape; `[rows, width]`.
        width: Columns of the transformed matrix (`Transform.width`).
        max_rows: The most rows one request may carry.

    Returns:
        The float32 matrix, ready for the model. Finite values beyond the transform's
        bound (`SCALED_LIMIT`) are clipped to it, as the transform clips raw rows.

    Raises:
        SchemaError: Wrong datatype, shape, value type, or a value that is not finite.
    """
    field = f"input {FEATURES_INPUT!r}"
    if datatype not in ("FP32", "FP64"):
        raise SchemaError(f"{field} has datatype {datatype!r}; send FP32 (or FP64)")
    if len(shape) != 2 or shape[1] != width:
        raise SchemaError(
            f"{field} has shape {shape}; send [rows, {width}], the transformed rows"
        )
    if shape[0] < 1:
        raise SchemaError(f"{field} is empty; send at least one row")
    if shape[0] > max_rows:
        raise SchemaError(
            f"{field} holds {shape[0]} rows, more than the {max_rows} allowed per "
            "request; split the batch"
        )
    if isinstance(values, list) and not set(map(type, values)) <= {int, float}:
        raise SchemaError(f"{field} must hold numbers only")
    # Checked before the cast to float32, where a finite 1e39 would become infinity.
    try:
        array = np.asarray(values)
        if array.dtype != np.float32:
            array = array.astype(np.float64)
    except (OverflowError, ValueError, TypeError) as err:
        raise SchemaError(f"{field} holds a number no float can hold: {err}") from err
    matrix = array.reshape(shape)
    finite = np.isfinite(matrix)
    if not finite.all():
        row = int(np.argmin(finite.all(axis=1)))
        raise SchemaError(f"{field} holds NaN or infinity in row {row}")
    # The bound every transformed row keeps, so the network never overflows to NaN.
    return np.clip(matrix, -SCALED_LIMIT, SCALED_LIMIT).astype(np.float32, copy=False)


def _check_batch(values: Any, *, field: str, max_rows: int) -> None:
    if not isinstance(values, list | np.ndarray):
        raise SchemaError(
            f"{field} must be a list of rows, got {type(values).__name__}"
        )
    if len(values) == 0:
        raise SchemaError(f"{field} is empty; send at least one row")
    if len(values) > max_rows:
        raise RequestTooLargeError(
            f"{field} holds {len(values)} rows, more than the {max_rows} allowed per "
            "request; split the batch"
        )


def _check_width(rows: list[list[Any]], schema: Schema) -> None:
    width = len(schema.columns)
    if set(map(len, rows)) != {width}:
        bad = next(index for index, row in enumerate(rows) if len(row) != width)
        raise SchemaError(
            f"instances[{bad}] has {len(rows[bad])} values, expected {width} in this "
            f"order: {schema.feature_names}"
        )


def _number_rows(rows: list[list[Any]], schema: Schema) -> ParsedRows | None:
    """The common case in one pass: every column numeric, every value a finite number.

    Returns None when any value needs the per-column checks (which name the field and
    row).
    """
    if any(column.kind != "numeric" for column in schema.columns):
        return None
    matrix = finite_number_matrix(rows, width=len(schema.columns))
    if matrix is None:
        return None
    numeric = _MatrixColumns(matrix, schema.feature_names)
    return ParsedRows(numeric=numeric, categorical={}, rows=len(rows), matrix=matrix)


class _MatrixColumns(Mapping[str, np.ndarray]):
    """A number matrix's columns by name, each sliced only when asked for.

    Most requests go to the model as the whole matrix; slicing every column up front
    was a sizable share of a one-row request's parsing.
    """

    def __init__(self, matrix: np.ndarray, names: list[str]) -> None:
        self._matrix = matrix
        self._names = names

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self._matrix[:, self._names.index(name)]
        except ValueError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def finite_number_matrix(
    sequences: Sequence[Sequence[Any]], *, width: int
) -> np.ndarray | None:
    """Sequences of `width` values as one float64 matrix if each value is a finite int
    or float, else None.

    One pyarrow conversion (to lists of float64) is the scan, about twice as fast as
    numpy's and without flattening in Python: text, bytes, containers, other objects
    and ints not exactly a double make it raise, null becomes a counted null. Only a
    bool turns into a number there, and always into 0 or 1: the types of the values
    equal to 0 or 1 are checked. Small batches (a few rows) skip pyarrow, whose fixed
    cost (about 40 us) is most of a one-row request's parsing: one C-speed type scan
    and one numpy call.
    """
    if len(sequences) * width <= _SMALL_BATCH_VALUES:
        return _finite_numbers_small(sequences, width=width)
    try:
        converted = pa.array(sequences, type=pa.list_(pa.float64(), width))
    except (pa.ArrowException, TypeError, ValueError, OverflowError):
        return None
    values = converted.flatten()
    if converted.null_count or values.null_count:
        return None
    array = values.to_numpy(zero_copy_only=False, writable=True)
    if not np.isfinite(array).all():
        return None
    zero_or_one = np.flatnonzero((array == 0.0) | (array == 1.0))
    picked = _values_at(sequences, zero_or_one, width=width)
    if not set(map(type, picked)) <= {int, float}:
        return None
    return array.reshape(len(sequences), width)


def _finite_numbers_small(
    sequences: Sequence[Sequence[Any]], *, width: int
) -> np.ndarray | None:
    if any(len(values) != width for values in sequences):
        return None
    flat = list(chain.from_iterable(sequences))
    # Exact types: bool (a subclass of int) is refused here.
    if not set(map(type, flat)) <= {int, float}:
        return None
    try:
        array = np.array(flat, dtype=np.float64)
    except OverflowError:  # an int beyond float64; the column checks name it
        return None
    if not np.isfinite(array).all():
        return None
    return array.reshape(len(sequences), width)


def _values_at(
    sequences: Sequence[Sequence[Any]], positions: np.ndarray, *, width: int
) -> Sequence[Any]:
    """The values at flat `positions` of equal-length `sequences`."""
    # One by one a value costs about as much as copying 16 into a flat list.
    if len(positions) * 16 <= len(sequences) * width:
        rows, columns = divmod(positions, width)
        pairs = zip(rows.tolist(), columns.tolist(), strict=True)
        return [sequences[row][column] for row, column in pairs]
    # Many (say columns of flags): one flat copy and a C-speed pick.
    picked = itemgetter(*positions.tolist())(list(chain.from_iterable(sequences)))
    return picked if len(positions) > 1 else [picked]  # one position: not a tuple


def _dict_columns(
    rows: list[dict[str, Any]], schema: Schema
) -> dict[str, Sequence[Any]]:
    expected = set(schema.feature_names)
    for index, row in enumerate(rows):
        if row.keys() != expected:
            _check_names(
                list(row), expected=expected, schema=schema, where=f"instances[{index}]"
            )
    return {name: [row[name] for row in rows] for name in schema.feature_names}


def _check_names(
    names: list[str], *, expected: set[str], schema: Schema, where: str
) -> None:
    unknown = [name for name in names if name not in expected]
    if unknown:
        raise SchemaError(
            f"{where} has unknown column {unknown[0]!r}; expected columns "
            f"{schema.feature_names}"
        )
    missing = [name for name in schema.feature_names if name not in names]
    if missing:
        raise SchemaError(
            f"{where} is missing column {missing[0]!r}; expected columns "
            f"{schema.feature_names}"
        )
    if len(names) != len(set(names)):
        repeated = next(name for name in names if names.count(name) > 1)
        raise SchemaError(f"{where} names column {repeated!r} twice")


def _check_datatype(name: str, *, datatype: str, column: ColumnSchema) -> None:
    if column.kind == "numeric" and datatype not in V2_NUMERIC_DATATYPES:
        raise SchemaError(
            f"input {name!r} is numeric but has datatype {datatype!r}; "
            "send FP32, FP64 or an INT type"
        )
    if column.kind == "categorical" and datatype not in {"BYTES"} | {
        "INT32",
        "INT64",
        "BOOL",
    }:
        raise SchemaError(
            f"input {name!r} is categorical but has datatype {datatype!r}; send BYTES"
        )


def _parse_columns(
    columns: Mapping[str, Sequence[Any]], schema: Schema, *, rows: int
) -> ParsedRows:
    numeric: dict[str, np.ndarray] = {}
    parsed = ParsedRows(numeric=numeric, categorical={}, rows=rows)
    numbers = _number_columns(columns, schema, rows=rows)
    if numbers is not None:
        names = [column.name for column in schema.columns if column.kind == "numeric"]
        numeric.update(zip(names, numbers, strict=True))
        if len(names) == len(schema.columns):
            parsed.matrix = numbers.T
    for column in schema.columns:
        values = columns[column.name]
        if column.kind != "numeric":
            parsed.categorical[column.name] = _category_values(values, column=column)
        elif numbers is None:
            numeric[column.name] = _numeric_values(values, column=column)
    return parsed


def _number_columns(
    columns: Mapping[str, Sequence[Any]], schema: Schema, *, rows: int
) -> np.ndarray | None:
    """The numeric columns in schema order as one `[columns, rows]` float64 array.

    Converted in one pass when every numeric column is a list (JSON) of finite numbers;
    None sends each column through `_numeric_values`, which names what is wrong.
    """
    names = [column.name for column in schema.columns if column.kind == "numeric"]
    if not names or not all(type(columns[name]) in (list, tuple) for name in names):
        return None
    return finite_number_matrix([columns[name] for name in names], width=rows)


def _numeric_values(values: Sequence[Any], *, column: ColumnSchema) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return _checked_numbers(values.astype(np.float64), column=column)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    types = set(map(type, values))
    allowed = {int, float, type(None)} | _NUMPY_NUMBER_TYPES
    if not types <= allowed or bool in types:
        bad_index = next(
            index
            for index, value in enumerate(values)
            if type(value) not in allowed or isinstance(value, bool)
        )
        raise SchemaError(
            f"column {column.name!r} must be a number, got {values[bad_index]!r} "
            f"({type(values[bad_index]).__name__}) at row {bad_index}"
        )
    try:
        array = np.array(values, dtype=np.float64)
    except OverflowError as err:
        bad_index = next(
            index for index, value in enumerate(values) if _beyond_float64(value)
        )
        raise SchemaError(
            f"column {column.name!r} holds a number beyond the float64 range at row "
            f"{bad_index}; send a finite number"
        ) from err
    return _checked_numbers(array, column=column)


def _beyond_float64(value: Any) -> bool:
    # Compared as a float, a huge int raises the same OverflowError it is looked for.
    try:
        float(value)
    except OverflowError:
        return True
    return False


def _checked_numbers(array: np.ndarray, *, column: ColumnSchema) -> np.ndarray:
    missing = np.isnan(array)
    if missing.any() and column.missing_share == 0.0:
        raise SchemaError(
            f"column {column.name!r} is missing (null/NaN) at row "
            f"{int(np.argmax(missing))}, and it was never missing in training; "
            "send a number"
        )
    infinite = np.isinf(array)
    if infinite.any():
        raise SchemaError(
            f"column {column.name!r} holds infinity at row {int(np.argmax(infinite))}; "
            "send a finite number"
        )
    return array


def _category_values(values: Sequence[Any], *, column: ColumnSchema) -> np.ndarray:
    if isinstance(values, np.ndarray):
        values = values.tolist()
    types = set(map(type, values))
    allowed = {str, int, bool, type(None), np.str_, np.bytes_, bytes}
    if not types <= allowed:
        bad_index = next(
            index for index, value in enumerate(values) if type(value) not in allowed
        )
        raise SchemaError(
            f"column {column.name!r} must be a category (a string), got "
            f"{values[bad_index]!r} ({type(values[bad_index]).__name__}) at row "
            f"{bad_index}"
        )
    if type(None) in types and column.missing_share == 0.0:
        bad_index = next(i for i, value in enumerate(values) if value is None)
        raise SchemaError(
            f"column {column.name!r} is missing (null) at row {bad_index}, and it was "
            "never missing in training; send a category"
        )
    array = np.empty(len(values), dtype=object)
    array[:] = [_category_text(value) for value in values]
    return array


def _category_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _type_names(types: set[type]) -> str:
    return ", ".join(sorted(kind.__name__ for kind in types))


_NUMPY_NUMBER_TYPES: set[type] = {
    np.float16,
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
}
