"""MicroBatcher: concurrent requests share one model call and get their own rows back."""

from __future__ import annotations

import asyncio

import numpy as np

from components.serving.model import MicroBatcher


def test_concurrent_requests_share_one_call() -> None:
    """Three requests inside one window make one call; each gets its own outputs."""
    calls: list[int] = []

    def predict_matrix(matrix: np.ndarray) -> np.ndarray:
        calls.append(len(matrix))
        return matrix[:, 0] * 10

    async def scenario() -> list[np.ndarray]:
        batcher = MicroBatcher(predict_matrix, window_ms=20, max_rows=100)
        requests = [np.full((rows, 2), float(rows)) for rows in (1, 2, 3)]
        return await asyncio.gather(*(batcher.predict(m) for m in requests))

    outputs = asyncio.run(scenario())
    assert calls == [6]
    for rows, output in zip((1, 2, 3), outputs, strict=True):
        np.testing.assert_array_equal(output, np.full(rows, rows * 10.0))


def test_full_batch_runs_without_waiting_and_errors_reach_every_request() -> None:
    """Reaching max_rows flushes at once; a model error is raised in each waiter."""

    def failing(matrix: np.ndarray) -> np.ndarray:
        raise RuntimeError("model broke")

    async def scenario() -> list[object]:
        batcher = MicroBatcher(failing, window_ms=10_000, max_rows=4)
        requests = [np.zeros((2, 1)), np.zeros((2, 1))]
        return await asyncio.wait_for(
            asyncio.gather(
                *(batcher.predict(m) for m in requests), return_exceptions=True
            ),
            timeout=5,
        )

    results = asyncio.run(scenario())
    assert [str(result) for result in results] == ["model broke", "model broke"]
