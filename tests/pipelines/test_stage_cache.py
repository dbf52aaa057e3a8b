"""The stage cache of `plumb run`: keys, verified entries, and real cached re-runs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
import pytest
from plumb_testing import quick_config

from components.common.artifacts import read_json, write_json
from pipelines.cache import (
    COMPONENTS_ROOT,
    StageCache,
    _package_modules,
    stage_keys,
)
from pipelines.local import CACHE_DIR, PipelineFailedError, run_pipeline

STAGES = {"preprocess", "train", "compress", "evaluate", "monitor"}


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_config_change_rekeys_its_stage_and_what_reads_it_only() -> None:
    """A field of one section changes the key of its stage and the stages downstream."""
    base = stage_keys(quick_config())
    assert set(base) == STAGES and None not in base.values()
    assert stage_keys(quick_config()) == base

    compression = stage_keys(quick_config(compression={"latency_repeats": 3}))
    assert _changed(base, compression) == {"compress", "evaluate"}
    training = stage_keys(quick_config(training={"epochs": 31}))
    assert _changed(base, training) == {"train", "compress", "evaluate"}
    monitoring = stage_keys(quick_config(monitoring={"drift_share": 0.4}))
    assert _changed(base, monitoring) == {"monitor"}
    data = stage_keys(quick_config(data={"max_rows": 500}))
    assert _changed(base, data) == STAGES


def test_data_content_change_rekeys_every_stage(tmp_path: Path) -> None:
    """Same path and config, one changed cell in the file: every stage is re-keyed."""
    path = tmp_path / "table.csv"
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": ["a", "b", "a", "b"]})
    frame.to_csv(path, index=False)
    config = quick_config(data={"dataset": str(path), "target": "y"})
    before = stage_keys(config)
    frame.loc[0, "x"] = 9.0
    frame.to_csv(path, index=False)
    assert _changed(before, stage_keys(config)) == STAGES


def test_local_incumbent_content_is_keyed_and_remote_is_not_cached(
    tmp_path: Path,
) -> None:
    """evaluate hashes a local incumbent folder; a remote one makes it uncacheable."""
    (tmp_path / "metadata.json").write_text("{}")
    config = quick_config(evaluation={"incumbent_model_dir": str(tmp_path)})
    before = stage_keys(config)
    (tmp_path / "metadata.json").write_text('{"changed": true}')
    assert _changed(before, stage_keys(config)) == {"evaluate"}
    remote = quick_config(evaluation={"incumbent_model_dir": "s3://bucket/model"})
    assert stage_keys(remote)["evaluate"] is None


def test_source_digest_covers_imported_plumb_modules() -> None:
    """A stage's code is its package plus the plumb modules it imports, no more."""
    modules = {
        str(path.relative_to(COMPONENTS_ROOT)) for path in _package_modules("train")
    }
    assert "train/baseline.py" in modules
    assert "preprocess/transform.py" in modules  # imported by the train package
    assert "common/config.py" in modules
    assert not any(name.startswith("monitoring/") for name in modules)


def _fake_task(task_dir: Path) -> dict[str, str]:
    """A finished task folder as kfp's SubprocessRunner leaves it."""
    model = task_dir / "model"
    model.mkdir(parents=True)
    (model / "model.onnx").write_bytes(b"onnx bytes")
    (model / "schema.json").write_text("{}")
    (task_dir / "verdict").write_text('{"passed": true}')
    write_json(
        task_dir / "executor_output.json",
        {
            "parameterValues": {"gate_passed": True},
            "artifacts": {
                "model": {
                    "artifacts": [
                        {
                            "name": "model",
                            "uri": str(model),
                            "metadata": {"framework": "pytorch"},
                        }
                    ]
                }
            },
        },
    )
    return {
        "model": "system.Model",
        "verdict": "system.Artifact",
        "metrics": "system.Metrics",
    }


def test_store_verify_and_materialize(tmp_path: Path) -> None:
    """A stored task comes back whole: files linked, metadata, parameters, metrics."""
    cache = StageCache(tmp_path / "cache")
    types = _fake_task(tmp_path / "task")
    assert not cache.store(
        "train", "k1", task_dir=tmp_path / "nowhere", artifact_types=types
    )
    assert cache.store("train", "k1", task_dir=tmp_path / "task", artifact_types=types)
    stored = cache.lookup("train", "k1")
    assert stored is not None and cache.lookup("train", "k2") is None

    outputs = cache.materialize(stored, tmp_path / "run" / "train")
    assert outputs["gate_passed"] is True
    assert outputs["model"].metadata == {"framework": "pytorch"}
    assert Path(outputs["model"].path, "model.onnx").read_bytes() == b"onnx bytes"
    assert Path(outputs["verdict"].path).read_text() == '{"passed": true}'
    assert Path(outputs["metrics"].path).is_file()  # metadata-only, as kfp expects


@pytest.mark.parametrize("damage", ["changed byte", "deleted file", "bad manifest"])
def test_damaged_entry_is_not_trusted(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An altered, missing or unreadable entry is a miss with a warning, then replaced."""
    cache = StageCache(tmp_path / "cache")
    types = _fake_task(tmp_path / "task")
    cache.store("train", "k1", task_dir=tmp_path / "task", artifact_types=types)
    entry = tmp_path / "cache" / "train" / "k1"
    if damage == "changed byte":
        (entry / "model" / "model.onnx").write_bytes(b"onnx bytez")
    elif damage == "deleted file":
        (entry / "verdict").unlink()
    else:
        (entry / "manifest.json").write_text("{not json")

    with caplog.at_level(logging.WARNING, logger="pipelines.cache"):
        assert cache.lookup("train", "k1") is None
    assert "not usable" in caplog.text and "recomputing" in caplog.text
    # The entry shares hard links with the task folder it came from, so a clean
    # entry is stored from a fresh one; it replaces the damaged entry.
    types = _fake_task(tmp_path / "task2")
    cache.store("train", "k1", task_dir=tmp_path / "task2", artifact_types=types)
    assert cache.lookup("train", "k1") is not None


def _summary(runs: Path) -> dict:
    newest = max(
        (p for p in runs.iterdir() if (p / "summary.json").is_file()),
        key=lambda p: p.name,
    )
    return read_json(newest / "summary.json")


@pytest.mark.slow
@pytest.mark.integration
def test_crash_then_rerun_continues_and_reruns_only_what_changed(
    tmp_path: Path,
) -> None:
    """Real kfp runs: a failed step keeps earlier stages; re-runs skip what is unchanged."""
    runs = tmp_path / "runs"
    sections = {
        "compression": {"enabled": False},
        "monitoring": {"html_reports": False},
    }
    # 1. evaluate fails (its incumbent folder does not exist); earlier stages are kept.
    broken = quick_config(
        **sections, evaluation={"incumbent_model_dir": str(tmp_path / "missing")}
    )
    with pytest.raises(PipelineFailedError):
        run_pipeline(broken, runs_dir=runs)
    failed = _summary(runs)
    assert failed["status"] == "failed"
    assert {"preprocess", "train", "compress"} <= set(failed["stored_stages"])
    assert "evaluate" not in failed["stored_stages"]

    # 2. Fixed: the run continues from the stored stages.
    config = quick_config(**sections)
    second = run_pipeline(config, runs_dir=runs)
    assert second.status == "succeeded"
    assert {"preprocess", "train", "compress"} <= set(second.cached_stages)
    assert "evaluate" in second.stored_stages
    assert second.metrics["roc_auc"] > 0.95  # breast-cancer; a working model

    # 3. Nothing changed: every cacheable stage is skipped, deploy still runs.
    third = run_pipeline(config, runs_dir=runs)
    assert set(third.cached_stages) == STAGES and third.stored_stages == []
    assert third.metrics == second.metrics
    assert third.inference_service_path is not None
    assert Path(third.model_path or "").is_relative_to(third.run_dir)

    # 4. A compression field changed and preprocess's stored train split damaged:
    # preprocess, compress and evaluate run again; train and monitor come from cache.
    entry = next((runs / CACHE_DIR / "preprocess").iterdir())
    with (entry / "train_data").open("ab") as handle:
        handle.write(b"\0")
    changed = quick_config(
        compression={"enabled": False, "latency_repeats": 3},
        monitoring={"html_reports": False},
    )
    fourth = run_pipeline(changed, runs_dir=runs)
    assert set(fourth.cached_stages) == {"train", "monitor"}
    assert set(fourth.stored_stages) == {"preprocess", "compress", "evaluate"}
    log = json.dumps(read_json(Path(fourth.run_dir) / "summary.json"))
    assert "failed" not in log

    # --no-cache reads nothing but refreshes every entry it ran.
    fifth = run_pipeline(changed, runs_dir=runs, use_cache=False)
    assert fifth.cached_stages == []
    assert set(fifth.stored_stages) == STAGES
