"""Batching: concurrent requests share one model call and get their own rows back."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from kserve import InferInput, InferRequest
from plumb_testing import prepare_and_train, quick_config

from components.preprocess.lib import PreparedData
from components.serving.model import (
    BATCHED_REQUEST_ROWS,
    MicroBatcher,
    PlumbModel,
    stacked,
)


def test_concurrent_requests_share_one_call() -> None:
    """Three requests inside one window make one call; each gets its own outputs."""
    calls: list[int] = []

    def predict_matrix(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return matrix[:, 0] * 10

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(stacked(predict_matrix), window_ms=20, max_rows=100)
        requests = [np.full((rows, 2), float(rows)) for rows in (1, 2, 3)]
        return await asyncio.gather(*(batcher.submit(m) for m in requests))

    outputs = asyncio.run(scenario())
    assert calls == [6]
    for rows, output in zip((1, 2, 3), outputs, strict=True):
        np.testing.assert_array_equal(output, np.full(rows, rows * 10.0))


def test_no_window_batches_only_requests_already_waiting() -> None:
    """Window 0: requests that arrive together share a call; one alone runs alone."""
    calls: list[int] = []

    def predict_matrix(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return matrix[:, 0]

    async def scenario() -> None:
        batcher = MicroBatcher(stacked(predict_matrix), window_ms=0, max_rows=100)
        together = await asyncio.gather(
            *(batcher.submit(np.full((1, 1), float(i))) for i in range(5))
        )
        assert [float(output[0]) for output in together] == [0, 1, 2, 3, 4]
        for _ in range(3):  # one after another: nothing to wait for
            assert float((await batcher.submit(np.full((1, 1), 7.0)))[0]) == 7.0

    asyncio.run(asyncio.wait_for(scenario(), timeout=5))
    assert calls == [5, 1, 1, 1]


def test_cancelled_request_leaves_the_others_answered() -> None:
    """A request whose client went away is dropped from its batch; the rest finish."""
    calls: list[int] = []

    def predict_matrix(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return matrix[:, 0]

    async def scenario() -> list[Any]:
        batcher = MicroBatcher(stacked(predict_matrix), window_ms=20, max_rows=100)
        tasks = [
            asyncio.create_task(batcher.submit(np.full((2, 1), float(i))))
            for i in range(3)
        ]
        await asyncio.sleep(0)  # all three are waiting in the batch now
        tasks[1].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    first, cancelled, last = asyncio.run(asyncio.wait_for(scenario(), timeout=5))
    assert isinstance(cancelled, asyncio.CancelledError)
    np.testing.assert_array_equal(first, [0.0, 0.0])
    np.testing.assert_array_equal(last, [2.0, 2.0])
    assert calls == [4]


def test_full_batch_runs_without_waiting_and_errors_reach_every_request() -> None:
    """Reaching max_rows flushes at once; a model error is raised in each waiter."""

    def failing(matrix: np.ndarray) -> np.ndarray:
        raise RuntimeError("model broke")

    async def scenario() -> list[object]:
        batcher = MicroBatcher(stacked(failing), window_ms=10_000, max_rows=4)
        requests = [np.zeros((2, 1)), np.zeros((2, 1))]
        return await asyncio.wait_for(
            asyncio.gather(
                *(batcher.submit(m) for m in requests), return_exceptions=True
            ),
            timeout=5,
        )

    results = asyncio.run(scenario())
    assert [str(result) for result in results] == ["model broke", "model broke"]


def _counting(model: PlumbModel) -> list[int]:
    """Record the rows of every network call `model` makes from now on."""
    calls: list[int] = []
    runtime = model.runtime
    predict_matrix = runtime.predict_matrix

    def counted(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return predict_matrix(matrix)

    runtime.predict_matrix = counted
    return calls


def _requests(model: PlumbModel, rows: pd.DataFrame) -> list[Any]:
    """Each row as its own request, cycling V1 lists, V1 objects and V2 tensors."""
    names = model.runtime.schema.feature_names
    requests: list[Any] = []
    for index, (_, row) in enumerate(rows.iterrows()):
        values = [None if pd.isna(value) else value for value in row.tolist()]
        if index % 3 == 0:
            requests.append({"instances": [values]})
        elif index % 3 == 1:
            requests.append({"instances": [dict(zip(names, values, strict=True))]})
        else:
            inputs = []
            for name, value in zip(names, values, strict=True):
                numeric = model.runtime.schema.column(name).kind == "numeric"
                tensor = InferInput(name, [1], "FP64" if numeric else "BYTES")
                tensor.set_data_from_numpy(
                    np.array([value], dtype=np.float64 if numeric else object)
                )
                inputs.append(tensor)
            requests.append(InferRequest(model_name=model.name, infer_inputs=inputs))
    return requests


def _probabilities(response: Any) -> list[float]:
    if isinstance(response, dict):
        return [row["probability"] for row in response["predictions"]]
    return list(response.outputs[0].data)


async def _gathered(model: PlumbModel, requests: list[Any]) -> list[list[float]]:
    responses = await asyncio.gather(*(model.predict(r) for r in requests))
    return [_probabilities(response) for response in responses]


async def _one_by_one(model: PlumbModel, requests: list[Any]) -> list[list[float]]:
    return [_probabilities(await model.predict(request)) for request in requests]


def _check_batched_answers_match(model_dir: Path, rows: pd.DataFrame) -> None:
    batched = PlumbModel("m", model_dir)
    alone = PlumbModel("m", model_dir, batching=False)
    batched.load()
    alone.load()
    requests = _requests(batched, rows)
    calls = _counting(batched)
    alone_calls = _counting(alone)

    together = asyncio.run(_gathered(batched, requests))
    separately = asyncio.run(_one_by_one(alone, requests))

    # float32 network outputs: a row's value does not depend on its batch neighbours
    # beyond float32 rounding in the matrix products.
    np.testing.assert_allclose(together, separately, rtol=0, atol=1e-6)
    assert sum(calls) == len(requests) and len(calls) < len(requests)
    assert alone_calls == [1] * len(requests)


def test_concurrent_requests_of_every_kind_match_unbatched(
    trained_model_dir: Path, prepared_breast_cancer: PreparedData
) -> None:
    """V1 lists, V1 objects and V2 tensors sent at once: one answer each, as alone."""
    schema = prepared_breast_cancer.schema
    rows = prepared_breast_cancer.splits["test"][schema.feature_names].head(12)
    _check_batched_answers_match(trained_model_dir, rows)


def test_large_request_runs_by_itself(trained_model_dir: Path) -> None:
    """A request over BATCHED_REQUEST_ROWS rows is not stacked with the others."""
    model = PlumbModel("m", trained_model_dir)
    model.load()
    width = len(model.runtime.schema.columns)
    calls = _counting(model)
    big = {"instances": [[1.0] * width] * (BATCHED_REQUEST_ROWS + 1)}
    small = {"instances": [[1.0] * width]}

    asyncio.run(_gathered(model, [small, big, small]))

    assert sorted(calls) == [2, BATCHED_REQUEST_ROWS + 1]


@pytest.fixture(scope="module")
def credit_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """An MLP on credit data (numeric and categorical columns, missing values)."""
    config = quick_config(data={"dataset": "credit"}, training={"epochs": 2})
    prepared, model_dir = prepare_and_train(config, tmp_path_factory.mktemp("credit"))
    return model_dir, prepared


def test_categorical_rows_batch_after_encoding(credit_model: tuple[Path, Any]) -> None:
    """With categorical columns each request encodes its rows; the network is shared."""
    model_dir, prepared = credit_model
    schema = prepared.schema
    assert any(column.kind == "categorical" for column in schema.columns)
    test = prepared.splits["test"][schema.feature_names]
    with_missing = test[test.isna().any(axis=1)].head(3)
    rows = pd.concat([with_missing, test.dropna().head(9)])
    _check_batched_answers_match(model_dir, rows)


def test_bad_requests_in_a_batch_fail_alone(
    trained_model_dir: Path, prepared_breast_cancer: PreparedData
) -> None:
    """Bad V1 requests batched with good ones get their own errors, as if sent alone.

    The good ones are answered, their rows in one network call.
    """
    schema = prepared_breast_cancer.schema
    rows = prepared_breast_cancer.splits["test"][schema.feature_names].head(4)
    good = [{"instances": [row]} for row in rows.values.tolist()]
    text, null = rows.values.tolist()[0], rows.values.tolist()[1]
    text[3] = "12,5"
    null[0] = None  # no missing values in training: refused
    requests = [good[0], {"instances": [text]}, good[1], {"instances": [null]}]
    requests += good[2:]

    batched = PlumbModel("m", trained_model_dir)
    alone = PlumbModel("m", trained_model_dir, batching=False)
    batched.load()
    alone.load()
    calls = _counting(batched)

    async def send(model: PlumbModel, together: bool) -> list[Any]:
        if together:
            return await asyncio.gather(
                *(model.predict(r) for r in requests), return_exceptions=True
            )
        answers: list[Any] = []
        for request in requests:
            try:
                answers.append(await model.predict(request))
            except Exception as err:
                answers.append(err)
        return answers

    together = asyncio.run(send(batched, together=True))
    separately = asyncio.run(send(alone, together=False))

    for index in (1, 3):
        assert type(together[index]) is type(separately[index])
        assert str(together[index]) == str(separately[index])
    assert schema.feature_names[3] in str(together[1])
    assert schema.feature_names[0] in str(together[3])
    answered = [i for i in range(len(requests)) if i not in (1, 3)]
    np.testing.assert_allclose(
        [_probabilities(together[i]) for i in answered],
        [_probabilities(separately[i]) for i in answered],
        rtol=0,
        atol=1e-6,
    )
    assert calls == [4]


@pytest.fixture(scope="module")
def quantized_dirs(
    trained_model_dir: Path,
    prepared_breast_cancer: PreparedData,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """The session's float model quantized to int8 both ways, as plumb's compress does."""
    from components.compress.onnx_quantize import calibration_matrix, quantize_model_dir
    from components.preprocess.transform import Transform

    root = tmp_path_factory.mktemp("quantized")
    transform = Transform.load(trained_model_dir / "transform.json")
    calibration = calibration_matrix(
        prepared_breast_cancer.splits["train"], transform=transform, rows=200, seed=0
    )
    return {
        mode: quantize_model_dir(
            trained_model_dir,
            root / mode,
            mode=mode,
            calibration=calibration if mode == "static" else None,
            work_dir=root,
        )
        for mode in ("dynamic", "static")
    }


def test_only_dynamic_quantization_makes_rows_depend_on_each_other(
    trained_model_dir: Path, quantized_dirs: dict[str, Path]
) -> None:
    """fp32 and static int8 answer a row alike in any batch; dynamic int8 does not."""
    from components.common.model_runtime import load_model
    from components.serving.model import rows_independent

    found = {}
    for name, model_dir in [("fp32", trained_model_dir), *quantized_dirs.items()]:
        runtime = load_model(model_dir)
        found[name] = rows_independent(runtime.predict_matrix, runtime.transform.width)
    assert found == {"fp32": True, "static": True, "dynamic": False}


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_an_extreme_request_never_moves_other_requests_answers(
    mode: str, quantized_dirs: dict[str, Path], prepared_breast_cancer: PreparedData
) -> None:
    """20 copies of a row sent with one extreme row get the answer the row gets alone.

    With dynamic int8 the extreme row would set the quantization scale of a shared
    call (0.99 -> 0.46 for this row when it did); those requests keep their own calls.
    """
    schema = prepared_breast_cancer.schema
    row = prepared_breast_cancer.splits["test"][schema.feature_names].iloc[0].tolist()
    extreme = list(row)
    extreme[schema.feature_names.index("mean area")] = 1e6
    requests = [{"instances": [row]}] * 10 + [{"instances": [extreme]}]
    requests += [{"instances": [row]}] * 10

    model = PlumbModel("m", quantized_dirs[mode])
    model.load()
    calls = _counting(model)
    alone = _probabilities(asyncio.run(model.predict({"instances": [row]})))[0]
    calls.clear()
    together = asyncio.run(_gathered(model, requests))

    copies = [answer[0] for answer in together[:10] + together[11:]]
    np.testing.assert_allclose(copies, [alone] * 20, rtol=0, atol=1e-6)
    assert calls == ([1] * 21 if mode == "dynamic" else [21])
