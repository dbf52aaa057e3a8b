"""A bounded load generator: steady predictor calls, each logged to the monitor.

Each thread sends one V1 `:predict` of 1-10 rows per tick to the predictor, then posts
the request and its response to the monitor's `/events` as KServe's logger would, and
every tenth tick posts labels to `/feedback`. Threads keep their own HTTP connection
and pace themselves to `rate_per_thread` ticks a second, so the load stays the same
whatever the servers' speed. Everything stays on 127.0.0.1 and stops at `deadline`.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from reliability_helpers import MODEL_NAME, TOKEN, event_headers


@dataclass
class LoadResult:
    """What the load saw: status counts, transport errors and latencies per target."""

    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: dict[str, list[float]] = field(default_factory=dict)
    answers: dict[int, list[float]] = field(default_factory=dict)
    """Probabilities the predictor gave per batch index (for same-answer checks)."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, target: str, status: int, latency_ms: float) -> None:
        with self.lock:
            self.statuses[(target, status)] += 1
            self.latencies_ms.setdefault(target, []).append(latency_ms)

    def server_errors(self) -> dict[tuple[str, int], int]:
        return {key: n for key, n in self.statuses.items() if key[1] >= 500}

    def count(self, target: str) -> int:
        return sum(n for (name, _), n in self.statuses.items() if name == target)

    def percentile_ms(self, target: str, percentile: float) -> float:
        return float(np.percentile(self.latencies_ms[target], percentile))


def batches(
    rows: list[list[float]], *, count: int, seed: int
) -> list[list[list[float]]]:
    """`count` batches of 1-10 rows drawn from `rows`, the same for a given seed."""
    pick = random.Random(seed)
    return [pick.sample(rows, pick.randint(1, 10)) for _ in range(count)]


def run_load(
    *,
    predictor_url: str,
    monitor_url: str | None,
    batch_list: list[list[list[float]]],
    names: list[str],
    threads: int,
    rate_per_thread: float,
    seconds: float,
    result: LoadResult | None = None,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Run the load for `seconds` or until `stop` is set; return (or fill) the result."""
    result = result or LoadResult()
    stop = stop or threading.Event()
    deadline = time.monotonic() + seconds
    workers = [
        threading.Thread(
            target=_worker,
            kwargs={
                "index": index,
                "threads": threads,
                "predictor_url": predictor_url,
                "monitor_url": monitor_url,
                "batch_list": batch_list,
                "names": names,
                "interval": 1.0 / rate_per_thread,
                "deadline": deadline,
                "result": result,
                "stop": stop,
            },
            name=f"load-{index}",
            daemon=True,
        )
        for index in range(threads)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=seconds + 60)
    return result


def _timed_post(
    client: httpx.Client, result: LoadResult, target: str, url: str, **kwargs: Any
) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = client.post(url, **kwargs)
    except httpx.HTTPError as err:
        with result.lock:
            result.errors[f"{target}: {type(err).__name__}"] += 1
        return None
    result.record(target, response.status_code, (time.perf_counter() - started) * 1e3)
    return response


def _worker(
    *,
    index: int,
    threads: int,
    predictor_url: str,
    monitor_url: str | None,
    batch_list: list[list[list[float]]],
    names: list[str],
    interval: float,
    deadline: float,
    result: LoadResult,
    stop: threading.Event,
) -> None:
    predict_url = f"{predictor_url}/v1/models/{MODEL_NAME}:predict"
    tick = index
    next_at = time.monotonic()
    logged: list[tuple[str, list[str]]] = []
    with httpx.Client(timeout=30) as client:
        while time.monotonic() < deadline and not stop.is_set():
            batch_index = tick % len(batch_list)
            batch = batch_list[batch_index]
            response = _timed_post(
                client, result, "predict", predict_url, json={"instances": batch}
            )
            if response is not None and response.status_code == 200:
                answers = [p["probability"] for p in response.json()["predictions"]]
                with result.lock:
                    result.answers.setdefault(batch_index, answers)
                if monitor_url is not None:
                    labels = [p["label"] for p in response.json()["predictions"]]
                    event_id = _log_pair(
                        client, result, monitor_url, batch, response.content, names
                    )
                    logged.append((event_id, labels))
            if monitor_url is not None and tick % 10 == index and logged:
                event_id, labels = logged[-1]
                _timed_post(
                    client,
                    result,
                    "feedback",
                    f"{monitor_url}/feedback",
                    json={"labels": {event_id: labels}},
                    headers={"authorization": f"Bearer {TOKEN}"},
                )
                logged.clear()
            tick += threads
            next_at += interval
            stop.wait(max(0.0, next_at - time.monotonic()))


def _log_pair(
    client: httpx.Client,
    result: LoadResult,
    monitor_url: str,
    batch: list[list[float]],
    response_body: bytes,
    names: list[str],
) -> str:
    event_id = str(uuid.uuid4())
    records = [dict(zip(names, row, strict=True)) for row in batch]
    for kind, body in (
        ("request", json.dumps({"instances": records}).encode()),
        ("response", response_body),
    ):
        _timed_post(
            client,
            result,
            "events",
            f"{monitor_url}/events",
            content=body,
            headers=event_headers(kind, event_id),
        )
    return event_id
