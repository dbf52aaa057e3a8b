"""Pairing, windows on disk, labels, the retraining trigger and the Evidently push."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from components.common.config import MonitoringConfig
from components.monitoring.events import InferenceEvent
from components.monitoring.trigger import RetrainTrigger
from components.monitoring.windows import LabelStore, Pairer, WindowKey, WindowStore

KEY = WindowKey("flights", "default")


def _event(kind: str, event_id: str) -> InferenceEvent:
    return InferenceEvent(
        event_id=event_id,
        kind=kind,
        inference_service="flights",
        namespace="plumb",
        endpoint="default",
        component="predictor",
        payload={},
    )


def test_pairer_pairs_either_order_and_expires() -> None:
    """Request and response pair by id in either order; stragglers expire in time."""
    pairer = Pairer(timeout_seconds=5.0, max_pending=3)
    assert pairer.offer(_event("response", "a"), [0.1], now=0.0) is None
    request, response = pairer.offer(_event("request", "a"), [{"x": 1}], now=1.0)
    assert (request.event.kind, response.decoded) == ("request", [0.1])
    assert pairer.offer(_event("request", "b"), [{"x": 2}], now=2.0) is None
    assert pairer.expire(now=6.0) == []
    (expired,) = pairer.expire(now=7.0)
    assert expired.event.event_id == "b" and len(pairer) == 0
    for index in range(5):
        pairer.offer(_event("request", f"c{index}"), [], now=10.0)
    # Past max_pending the oldest go first, however young.
    assert [p.event.event_id for p in pairer.expire(now=10.0)] == ["c0", "c1"]


def test_window_store_closes_by_rows_and_time_and_restores(tmp_path: Path) -> None:
    """Rows are journaled; a new store reloads them; time closes only full-enough ones."""
    store = WindowStore(tmp_path)
    rows = [{"a": 1.0}, {"a": 2.0}]
    store.add(
        KEY,
        namespace="plumb",
        request_id="r1",
        rows=rows,
        predictions=[0.1, 0.2],
        now=100.0,
    )
    assert store.due(101.0, window_rows=10, window_seconds=60, min_rows=1) == []
    assert store.due(161.0, window_rows=10, window_seconds=60, min_rows=3) == []
    assert store.due(161.0, window_rows=10, window_seconds=60, min_rows=2) == [KEY]
    store.open[KEY].close_journal()
    # A torn last line (a killed pod) loses only that line.
    with store.open[KEY].journal.open("a") as journal:
        journal.write('{"id": "r2", "t": 1')

    restored = WindowStore(tmp_path)
    assert restored.restore() == []
    window = restored.open[KEY]
    assert len(window.rows) == 2 and window.opened_at == 100.0
    frame = window.frame(["a"])
    assert frame["prediction"].tolist() == [0.1, 0.2]
    assert frame["request_id"].tolist() == ["r1", "r1"]

    closed = restored.close(KEY, now=200.0)
    assert closed.journal.parent.name == "closing" and closed.window_id
    again = WindowStore(tmp_path)
    (pending,) = again.restore()
    assert pending.window_id == closed.window_id and pending.row_count == 2
    # A restored closed window waits on disk; its frame reads the journal.
    assert pending.spilled and pending.rows == []
    assert pending.frame(["a"])["a"].tolist() == [1.0, 2.0]
    again.finish(pending)
    assert WindowStore(tmp_path).restore() == []


def test_label_store_is_bounded_and_survives_restart(tmp_path: Path) -> None:
    """Labels persist across a restart; past the bound the oldest are forgotten."""
    store = LabelStore(tmp_path, max_labels=2)
    store.add({"a": [1.0], "b": [0.0]})
    store.add({"c": [1.0, 0.0]})
    reloaded = LabelStore(tmp_path, max_labels=2)
    assert reloaded.get("a") is None
    assert reloaded.get("c") == [1.0, 0.0] and len(reloaded) == 2


def test_trigger_fires_once_per_cooldown_and_persists(tmp_path: Path) -> None:
    """K drifted windows fire (dry run); the cool-down holds; a stable window resets."""
    config = MonitoringConfig(
        retrain_after_windows=2, retrain_cooldown_seconds=100, retrain_dry_run=True
    )
    trigger = RetrainTrigger(config, tmp_path / "trigger.json")
    fired = [
        trigger.observe("k", drifted=True, window_id=f"w{i}", summary={}, now=float(i))
        for i in range(4)
    ]
    assert [outcome is not None for outcome in fired] == [False, True, False, False]
    assert fired[1] is not None and fired[1].outcome == "dry_run"
    restarted = RetrainTrigger(config, tmp_path / "trigger.json")
    assert restarted.state("k").consecutive_drifted == 2
    assert restarted.observe("k", drifted=True, window_id="w4", summary={}, now=150.0)
    restarted.observe("k", drifted=False, window_id="w5", summary={}, now=151.0)
    assert restarted.state("k").consecutive_drifted == 0


def test_failed_webhook_is_an_error_outcome_and_retried(tmp_path: Path) -> None:
    """A webhook nobody answers gives outcome 'error' and no cool-down."""
    config = MonitoringConfig(
        retrain_after_windows=1,
        retrain_action="webhook",
        retrain_webhook_url="http://127.0.0.1:9/retrain",
    )
    trigger = RetrainTrigger(config, tmp_path / "trigger.json")
    outcome = trigger.observe("k", drifted=True, window_id="w0", summary={}, now=0.0)
    assert outcome is not None and outcome.outcome == "error"
    assert trigger.state("k").last_fired_at is None


def test_snapshot_is_added_to_a_local_evidently_workspace(tmp_path: Path) -> None:
    """With evidently_workspace set to a folder, the window snapshot lands there."""
    from evidently.ui.workspace import Workspace

    from components.monitoring.drift import compute_drift
    from components.monitoring.service import push_snapshot
    from components.preprocess.schema import ColumnSchema, Schema

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=300)})
    schema = Schema(columns=[ColumnSchema("a", "numeric")], target="y", task="binary")
    result = compute_drift(
        frame,
        frame.iloc[:100],
        schema=schema,
        config=MonitoringConfig(),
        run_report=True,
    )
    folder = tmp_path / "workspace"
    project_id = push_snapshot(
        result.snapshot, workspace=str(folder), project_id=None, state_dir=tmp_path
    )
    assert (
        json.loads((tmp_path / "evidently_project.json").read_text())["id"]
        == project_id
    )
    assert len(Workspace(str(folder)).list_runs(project_id)) == 1
    with pytest.raises(ValueError):
        MonitoringConfig(retrain_action="kfp")


def test_closed_windows_wait_on_disk_not_in_memory(tmp_path: Path) -> None:
    """A spilled window holds no rows in memory and gives back every row it had."""
    store = WindowStore(tmp_path)
    for index in range(3):
        store.add(
            KEY,
            namespace="plumb",
            request_id=f"r{index}",
            rows=[{"a": float(index)}, {"a": float(index) + 0.5}],
            predictions=None,
            now=100.0 + index,
        )
    window = store.close(KEY, now=200.0)
    before = window.frame(["a"])

    window.spill()

    assert window.rows == [] and window.row_count == 6
    after = window.frame(["a"])
    pd.testing.assert_frame_equal(after, before)
    assert after["request_id"].tolist() == ["r0", "r0", "r1", "r1", "r2", "r2"]


def test_rows_appended_after_a_torn_line_survive_the_spill(tmp_path: Path) -> None:
    """A restored window whose journal ends in a torn line keeps the rows added after
    the restart when its journal is read back (the torn line alone is lost)."""
    store = WindowStore(tmp_path)
    store.add(
        KEY,
        namespace="plumb",
        request_id="r1",
        rows=[{"a": 1.0}],
        predictions=[0.1],
        now=100.0,
    )
    store.open[KEY].close_journal()
    with store.open[KEY].journal.open("a") as journal:
        journal.write('{"id": "torn", "t": 1')

    restored = WindowStore(tmp_path)
    assert restored.restore() == []
    restored.add(
        KEY,
        namespace="plumb",
        request_id="r2",
        rows=[{"a": 2.0}, {"a": 3.0}],
        predictions=[0.2, 0.3],
        now=110.0,
    )
    window = restored.close(KEY, now=200.0)
    window.spill()

    frame = window.frame(["a"])
    assert window.row_count == 3
    assert frame["a"].tolist() == [1.0, 2.0, 3.0]
    assert frame["request_id"].tolist() == ["r1", "r2", "r2"]
