"""The predictor: a `kserve.Model` that serves a plumb model directory.

`PlumbModel` loads the directory with `load_model` (the runtime its `metadata.json`
names), checks every request against the training schema (`validation`), runs the
shared transform and the network, and answers:

- V1 `:predict` with `{"predictions": [{"probability": p, "label": "M"}, ...]}` for a
  binary task or `[{"value": v}, ...]` for regression;
- V2 `/infer` with one output tensor per field (`probability` and `label`, or `value`);
- V1 `:explain` with per-row attributions from `explain_rows`, the function the
  evaluation report uses.

Requests of a few rows that wait at the same moment share one transform and network
call (`MicroBatcher`; `batching`, `batch_window_ms`). Errors become HTTP codes in
`components.serving.errors` only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable, Sized
from itertools import chain
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from components.common.errors import SchemaError
from components.common.model_runtime import load_model
from components.evaluate.explain import explain_rows
from components.preprocess.transform import SCALED_LIMIT, category_codes
from components.serving.errors import kserve_errors
from components.serving.validation import (
    FEATURES_INPUT,
    ParsedRows,
    finite_number_matrix,
    parse_feature_matrix,
    parse_instances,
    parse_tensors,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 10_000
DEFAULT_DECISION_THRESHOLD = 0.5
# Requests of more rows skip the batcher: their own model call already spreads its
# fixed cost over many rows, and stacking would copy them.
BATCHED_REQUEST_ROWS = 64

Item = TypeVar("Item", bound=Sized)  # len(item): its rows
Result = TypeVar("Result")


class MicroBatcher(Generic[Item, Result]):
    """Run one model call for the requests that are waiting for it at the same moment.

    Each request hands its item (its rows, in some form) to `submit` and waits.
    `run_batch` gets the items of every waiting request, in order, and returns one
    result per item: the request's outputs, or the exception for that request alone.
    With `window_ms` 0 (the default) nothing is added to a request's time: the batch
    runs at the event loop's next turn and holds the requests that reached `submit`
    meanwhile. Under concurrent load that is several; alone, a request runs by itself.
    A positive `window_ms` waits that long after the first request for more. A batch
    runs at once when it reaches `max_rows`.
    """

    def __init__(
        self,
        run_batch: Callable[[list[Item]], list[Result | Exception]],
        *,
        window_ms: float,
        max_rows: int,
    ) -> None:
        self._run_batch = run_batch
        self._window_seconds = window_ms / 1000.0
        self._max_rows = max_rows
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._pending_rows = 0
        self._scheduled: asyncio.TimerHandle | None = None

    async def submit(self, item: Item) -> Result:
        """Return the result for `item`, computed in one call with other waiting items."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        self._pending_rows += len(item)
        if self._pending_rows >= self._max_rows:
            self._flush()
        elif self._scheduled is None:
            # A timer, even of 0 s, runs after the loop's next poll of the sockets,
            # so requests that arrived meanwhile on other connections join the batch
            # (`call_soon` would run it before they are read).
            self._scheduled = loop.call_later(self._window_seconds, self._flush)
        return await future

    def _flush(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        batch, self._pending, self._pending_rows = self._pending, [], 0
        # A request cancelled while it waited (at shutdown, say) is not run.
        batch = [(item, future) for item, future in batch if not future.done()]
        if not batch:
            return
        try:
            results = self._run_batch([item for item, _ in batch])
        except Exception as err:  # handed to every waiting request, not swallowed
            results = [err] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)


def stacked(
    predict_matrix: Callable[[np.ndarray], np.ndarray],
) -> Callable[[list[np.ndarray]], list[np.ndarray | Exception]]:
    """A `MicroBatcher` run for matrices: stack them, predict once, split the output."""

    def run(matrices: list[np.ndarray]) -> list[np.ndarray | Exception]:
        if len(matrices) == 1:
            return [predict_matrix(matrices[0])]
        outputs = predict_matrix(np.vstack(matrices))
        return list(np.split(outputs, np.cumsum([len(m) for m in matrices[:-1]])))

    return run


def rows_independent(
    predict_matrix: Callable[[np.ndarray], np.ndarray], width: int
) -> bool:
    """Whether each row's output is the same alone as in a batch with other rows.

    Not so for onnxruntime's dynamic int8 quantization: it takes one scale for the whole
    input, so one extreme row in a batch moves every other row's answer. Checked on the
    model itself: a few rows alone, then together with rows at the transform's limits.
    """
    rows = np.random.default_rng(0).standard_normal((4, width)).astype(np.float32)
    extremes = np.full((2, width), SCALED_LIMIT, dtype=np.float32) * [[1.0], [-1.0]]
    alone = np.concatenate([predict_matrix(row[np.newaxis]) for row in rows])
    together = predict_matrix(np.vstack([rows, extremes]))[: len(rows)]
    # float32 products of different batch shapes round differently, well inside this.
    return bool(np.allclose(alone, together, rtol=1e-5, atol=1e-6))


class PlumbModel(Model):
    """A plumb model directory served over KServe's V1 and V2 protocols."""

    def __init__(
        self,
        name: str,
        model_dir: str | Path,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        batching: bool = True,
        batch_window_ms: float = 0.0,
        threads: int | None = None,
    ) -> None:
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self.max_rows = max_rows
        self.batching = batching
        self.batch_window_ms = batch_window_ms
        self.threads = threads
        self.runtime: Any = None
        # V1 requests hand their `instances` to one batcher, which checks them
        # together (`_predict_instances`); V2 requests hand their encoded rows to the
        # other. Requests of more than `_batched_rows` rows run by themselves.
        self._instances_batcher: MicroBatcher[list, np.ndarray] | None = None
        self._encoded_batcher: MicroBatcher[np.ndarray, np.ndarray] | None = None
        self._batched_rows = min(BATCHED_REQUEST_ROWS, max_rows)
        # Batched requests share one network call only if rows do not affect each
        # other's outputs (see `rows_independent`); else each request gets its own.
        self._rows_independent = True
        self._schema_ordered_transform = False
        self.decision_threshold = DEFAULT_DECISION_THRESHOLD
        self._labels: tuple[str, str] | None = None  # (negative, positive) if binary

    def load(self) -> bool:
        """Load the model directory; the server answers 503 until this has run."""
        self.runtime = load_model(self.model_dir, threads=self.threads)
        schema = self.runtime.schema
        transform = self.runtime.transform
        # True for every all-numeric transform plumb fits (its steps follow the
        # schema): a request's number matrix then goes to `encode` as it is.
        self._schema_ordered_transform = not transform.categorical and [
            step.name for step in transform.numeric
        ] == list(schema.feature_names)
        self.decision_threshold = float(
            self.runtime.metadata.get("decision_threshold", DEFAULT_DECISION_THRESHOLD)
        )
        if schema.task == "binary":
            positive = str(schema.positive_class)
            others = [name for name in schema.classes if name != positive]
            self._labels = (
                others[0] if len(others) == 1 else f"not {positive}",
                positive,
            )
        if self.batching:
            try:
                self._rows_independent = rows_independent(
                    self.runtime.predict_matrix, transform.width
                )
            except Exception as err:  # requests will meet it too, and get a 500
                logger.warning(
                    "The model failed on probe rows of the transform's %d features "
                    "(%s); batched requests keep one network call each",
                    transform.width,
                    err,
                )
                self._rows_independent = False
            logger.info(
                "Batching: requests waiting together share %s",
                "one network call"
                if self._rows_independent
                else "checks and transform; each keeps its own network call, as a "
                "row's output may depend on the other rows of a call (dynamic "
                "quantization)",
            )
            window, most = self.batch_window_ms, self.max_rows
            self._instances_batcher = MicroBatcher(
                self._predict_instances, window_ms=window, max_rows=most
            )
            self._encoded_batcher = MicroBatcher(
                self._predict_requests, window_ms=window, max_rows=most
            )
        logger.info(
            "Loaded %s model %s (%s, %d features) as %r",
            schema.task,
            self.model_dir,
            self.runtime.metadata.get("compression", "none"),
            len(schema.columns),
            self.name,
        )
        self.ready = True
        return self.ready

    def __getstate__(self) -> dict[str, Any]:
        # With --workers > 1 kserve pickles the model into each spawned worker; an
        # onnxruntime session cannot be pickled, so each worker loads its own.
        state = self.__dict__.copy()
        state.update(runtime=None, _instances_batcher=None, _encoded_batcher=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self.ready:
            self.load()

    async def predict(
        self,
        payload: dict | InferRequest,
        headers: dict[str, str] | None = None,
        response_headers: dict[str, str] | None = None,
    ) -> dict | InferResponse:
        """Answer a V1 `instances` body or a V2 `InferRequest`."""
        with kserve_errors():
            instances = self._batchable_instances(payload)
            if instances is not None and self._instances_batcher is not None:
                outputs = await self._instances_batcher.submit(instances)
            else:
                encoded = self._feature_matrix(payload)
                if encoded is None:
                    encoded = self._encode(self._parse(payload))
                if self._encoded_batcher and len(encoded) <= self._batched_rows:
                    outputs = await self._encoded_batcher.submit(encoded)
                else:
                    outputs = self._predict_encoded(encoded)
            fields = self._output_fields(outputs)
        if isinstance(payload, InferRequest):
            return self._infer_response(payload, fields)
        return {"predictions": _records(fields)}

    async def explain(
        self, payload: dict, headers: dict[str, str] | None = None
    ) -> dict:
        """Answer a V1 `:explain` body: the prediction and attributions per row."""
        with kserve_errors():
            frame = self._parse(payload).to_frame(self.runtime.schema)
            fields = self._output_fields(self.runtime.predict(frame))
            attributions = explain_rows(self.runtime, frame)
        names = list(fields)
        return {
            "explanations": [
                {
                    **{name: fields[name][index] for name in names},
                    "attributions": row,
                }
                for index, row in enumerate(attributions)
            ]
        }

    def get_input_types(self) -> list[dict]:
        """V2 metadata: one input tensor per raw feature column."""
        return [
            {
                "name": column.name,
                "datatype": "FP64" if column.kind == "numeric" else "BYTES",
                "shape": [-1],
            }
            for column in self.runtime.schema.columns
        ]

    def get_output_types(self) -> list[dict]:
        """V2 metadata: `probability` and `label`, or `value`."""
        if self.runtime.schema.task == "binary":
            return [
                {"name": "probability", "datatype": "FP64", "shape": [-1]},
                {"name": "label", "datatype": "BYTES", "shape": [-1]},
            ]
        return [{"name": "value", "datatype": "FP64", "shape": [-1]}]

    def _parse(self, payload: dict | InferRequest) -> ParsedRows:
        schema = self.runtime.schema
        if isinstance(payload, InferRequest):
            tensors = [_tensor_values(tensor) for tensor in payload.inputs]
            return parse_tensors(tensors, schema, max_rows=self.max_rows)
        if not isinstance(payload, dict):
            raise SchemaError(
                "a V1 request body must be a JSON object with 'instances' (a list of "
                f"rows), got {type(payload).__name__}; send it as application/json"
            )
        if "instances" not in payload:
            raise SchemaError(
                "a V1 request body must be an object with 'instances' (a list of "
                f"rows), got keys {sorted(payload)[:10]}"
            )
        return parse_instances(payload["instances"], schema, max_rows=self.max_rows)

    def _feature_matrix(self, payload: dict | InferRequest) -> np.ndarray | None:
        """The V2 `features` tensor (rows already transformed), if that was sent."""
        if not isinstance(payload, InferRequest) or len(payload.inputs) != 1:
            return None
        tensor = payload.inputs[0]
        if (
            tensor.name != FEATURES_INPUT
            or FEATURES_INPUT in self.runtime.schema.feature_names
        ):
            return None
        _, datatype, shape, values = _tensor_values(tensor)
        return parse_feature_matrix(
            values,
            datatype=datatype,
            shape=shape,
            width=self.runtime.transform.width,
            max_rows=self.max_rows,
        )

    def _batchable_instances(self, payload: dict | InferRequest) -> list | None:
        """A V1 body's `instances` when batching is on and they are few enough.

        Only the shape is looked at here; `_predict_instances` checks the values.
        """
        if self._instances_batcher is None or type(payload) is not dict:
            return None
        instances = payload.get("instances")
        if type(instances) is list and 0 < len(instances) <= self._batched_rows:
            return instances
        return None

    def _predict_instances(self, requests: list[list]) -> list[np.ndarray | Exception]:
        """Check and predict the `instances` of several V1 requests together.

        The common case (every column numeric, every row a list of finite numbers) is
        checked for all requests by one conversion. Otherwise each request is parsed
        by itself, so a bad one gets its own error and the others are answered.
        """
        schema = self.runtime.schema
        if self._schema_ordered_transform:
            rows = list(chain.from_iterable(requests))
            if set(map(type, rows)) == {list}:
                matrix = finite_number_matrix(rows, width=len(schema.columns))
                if matrix is not None:
                    transform = self.runtime.transform
                    together = transform.encode(matrix, {}, rows=len(matrix))
                    bounds = np.cumsum([len(part) for part in requests[:-1]])
                    if self._rows_independent:
                        outputs = self._predict_encoded(together)
                        return list(np.split(outputs, bounds))
                    return self._predict_requests(np.split(together, bounds))
        encoded: list[np.ndarray | Exception] = []
        for instances in requests:
            try:
                parsed = parse_instances(instances, schema, max_rows=self.max_rows)
                encoded.append(self._encode(parsed))
            except Exception as err:  # this request's own 4xx, or its 500
                encoded.append(err)
        matrices = [item for item in encoded if not isinstance(item, Exception)]
        results = iter(self._predict_requests(matrices) if matrices else [])
        return [
            item if isinstance(item, Exception) else next(results) for item in encoded
        ]

    def _encode(self, parsed: ParsedRows) -> np.ndarray:
        transform = self.runtime.transform
        if parsed.matrix is not None and self._schema_ordered_transform:
            return transform.encode(parsed.matrix, {}, rows=parsed.rows)
        codes = {
            step.name: category_codes(parsed.categorical[step.name], step.categories)
            for step in transform.categorical
        }
        return transform.encode(parsed.numeric, codes, rows=parsed.rows)

    def _predict_encoded(self, encoded: np.ndarray) -> np.ndarray:
        return self.runtime.predict_matrix(encoded)

    def _predict_requests(
        self, matrices: list[np.ndarray]
    ) -> list[np.ndarray | Exception]:
        """The outputs for several requests' encoded rows: one network call if rows
        are independent, else one call per request."""
        if self._rows_independent:
            return stacked(self._predict_encoded)(matrices)
        return [self._predict_encoded(matrix) for matrix in matrices]

    def _output_fields(self, outputs: np.ndarray) -> dict[str, list]:
        values = outputs.tolist()
        if self._labels is None:
            return {"value": values}
        negative, positive = self._labels
        threshold = self.decision_threshold
        labels = [positive if value >= threshold else negative for value in values]
        return {"probability": values, "label": labels}

    def _infer_response(
        self, request: InferRequest, fields: dict[str, list]
    ) -> InferResponse:
        outputs = [
            InferOutput(
                name=name,
                shape=[len(values)],
                datatype="BYTES" if name == "label" else "FP64",
                data=values,
            )
            for name, values in fields.items()
        ]
        return InferResponse(
            response_id=request.id or str(uuid.uuid4()),
            model_name=self.name,
            infer_outputs=outputs,
        )


def _records(fields: dict[str, list]) -> list[dict[str, Any]]:
    """Column lists to one object per row; dict literals are ~2x faster than zip."""
    if set(fields) == {"probability", "label"}:
        return [
            {"probability": probability, "label": label}
            for probability, label in zip(
                fields["probability"], fields["label"], strict=True
            )
        ]
    names = list(fields)
    return [
        dict(zip(names, row, strict=True)) for row in zip(*fields.values(), strict=True)
    ]


def _tensor_values(tensor: Any) -> tuple[str, str, list[int], list | np.ndarray]:
    """Return `(name, datatype, shape, flat values)` of one V2 input tensor.

    JSON data stays a list (flattened when sent nested); binary tensor data is kserve's
    1-D numpy array. Nothing is copied value by value. A gRPC tensor sent as raw bytes
    arrives with an empty `data` list; its values are in `as_numpy()`.
    """
    name, datatype, shape = tensor.name, tensor.datatype, list(tensor.shape)
    expected = math.prod(shape) if shape else 0
    data = tensor.data
    if isinstance(data, list) and not data and expected:
        try:  # gRPC raw bytes, or truly empty: then the length check names it
            data = tensor.as_numpy()
        except (ValueError, TypeError, InvalidInput):
            pass
    try:
        if isinstance(data, list):
            flat: list | np.ndarray = data
            while flat and all(type(value) is list for value in flat):
                flat = list(chain.from_iterable(flat))
        else:
            array = data if isinstance(data, np.ndarray) else tensor.as_numpy()
            flat = array.reshape(-1)
    except (ValueError, TypeError) as err:
        raise SchemaError(f"input {name!r} cannot be read: {err}") from err
    if len(flat) != expected:
        raise SchemaError(
            f"input {name!r} declares shape {shape} ({expected} values) but holds "
            f"{len(flat)}"
        )
    return name, datatype, shape, flat
