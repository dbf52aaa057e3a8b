"""Cluster training jobs: TrainJob, PyTorchJob and TFJob objects, create and wait.

Rendering and round trips use the real kubeflow SDK models. No Kubernetes API server
can run here, so `create_and_wait` and `run_cluster_training` talk to small fakes of
`CustomObjectsApi` / `CoreV1Api` that answer the way the API server does; the fake's
"job" runs plumb's real worker in-process on the staged data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from kubeflow.training.api_client import ApiClient
from kubeflow_trainer_api.models import TrainerV1alpha1TrainJob
from kubernetes import client as k8s
from plumb_testing import quick_config

from components.common.config import PlumbConfig, TrainingConfig
from components.common.errors import ConfigError, PlumbError
from components.common.net import free_port
from components.preprocess.lib import PreparedData
from components.train.cluster import (
    create_and_wait,
    parse_v1_job,
    render_pytorchjob,
    render_tfjob,
    render_trainjob,
    run_cluster_training,
    run_tfjob_training,
)
from components.train.launch import TrainingFailedError
from components.train.loop import TrainingData
from components.train.tf_train import TrainingArrays
from components.train.worker import WorkerSpec, run_worker


def _cluster_training(**overrides: Any) -> TrainingConfig:
    return quick_config(
        training={
            "workers": 3,
            "gpus_per_worker": 2,
            "backend": "trainjob",
            "cluster": {
                "namespace": "ml",
                "image": "registry.example/plumb:1",
                "volume_claim": "plumb-shared",
                "node_selector": {"nvidia.com/gpu.present": "true"},
                "tolerations": [
                    {
                        "key": "nvidia.com/gpu",
                        "operator": "Exists",
                        "effect": "NoSchedule",
                    }
                ],
                "cpu": "4",
                "memory": "16Gi",
            },
            **overrides,
        }
    ).training


def test_trainjob_renders_and_round_trips() -> None:
    """The TrainJob carries workers, GPUs, image, resources, selector, tolerations."""
    body = render_trainjob(
        _cluster_training(), name="t1", spec_path="/mnt/plumb/t1/s.json"
    )
    assert TrainerV1alpha1TrainJob.from_dict(body).to_dict() == body
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
    assert body["kind"] == "TrainJob"
    assert body["metadata"] == {
        "name": "t1",
        "namespace": "ml",
        "labels": {"app.kubernetes.io/part-of": "plumb"},
    }
    spec = body["spec"]
    assert spec["runtimeRef"] == {"name": "torch-distributed"}
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 3
    assert trainer["numProcPerNode"] == 2
    assert trainer["image"] == "registry.example/plumb:1"
    assert trainer["command"][-3:] == [
        "-m",
        "components.train.worker",
        "/mnt/plumb/t1/s.json",
    ]
    assert trainer["resourcesPerNode"]["limits"] == {
        "cpu": "4",
        "memory": "16Gi",
        "nvidia.com/gpu": "2",
    }
    (patch,) = spec["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    pod = job["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "plumb-shared"}
    assert pod["containers"][0]["volumeMounts"][0]["mountPath"] == "/mnt/plumb"


def test_trainjob_rejects_a_misspelled_field() -> None:
    """A field the SDK model does not know is dropped, so the round trip catches it."""
    body = render_trainjob(_cluster_training(), name="t1", spec_path="/s.json")
    body["spec"]["trainer"]["numNode"] = 2
    assert TrainerV1alpha1TrainJob.from_dict(body).to_dict() != body


def test_pytorchjob_renders_and_round_trips() -> None:
    """The PyTorchJob has one Master and workers-1 Workers with the pod settings."""
    training = _cluster_training(backend="pytorchjob")
    body = render_pytorchjob(training, name="p1", spec_path="/mnt/plumb/p1/s.json")
    model = parse_v1_job(body, "PyTorchJob")
    assert ApiClient().sanitize_for_serialization(model) == body
    assert body["apiVersion"] == "kubeflow.org/v1" and body["kind"] == "PyTorchJob"
    replicas = body["spec"]["pytorchReplicaSpecs"]
    assert replicas["Master"]["replicas"] == 1
    assert replicas["Worker"]["replicas"] == 2
    assert body["spec"]["nprocPerNode"] == "2"
    assert body["spec"]["runPolicy"]["backoffLimit"] == training.max_restarts
    pod = replicas["Worker"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "pytorch"
    assert container["image"] == "registry.example/plumb:1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "--node-rank=$(PET_NODE_RANK)" in container["command"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_tfjob_renders_and_round_trips() -> None:
    """The TFJob's `workers` Worker pods run the local launcher's TF worker module."""
    training = _cluster_training(framework="tensorflow", backend="tfjob")
    body = render_tfjob(training, name="tf1", job_dir="/mnt/plumb/tf1")
    model = parse_v1_job(body, "TFJob")
    assert ApiClient().sanitize_for_serialization(model) == body
    assert body["kind"] == "TFJob"
    assert body["spec"]["runPolicy"]["backoffLimit"] == training.max_restarts
    worker = body["spec"]["tfReplicaSpecs"]["Worker"]
    assert worker["replicas"] == 3
    assert worker["restartPolicy"] == "OnFailure"
    pod = worker["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == "tensorflow"
    assert container["image"] == "registry.example/plumb:1"
    # The module the local launcher starts, minus --rank (TF_CONFIG gives the index).
    assert container["command"] == [
        "python",
        "-m",
        "components.train.tf_workers",
        "--job-dir",
        "/mnt/plumb/tf1",
    ]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert container["volumeMounts"][0]["mountPath"] == "/mnt/plumb"
    assert pod["volumes"][0]["persistentVolumeClaim"] == {"claimName": "plumb-shared"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


@pytest.mark.slow
def test_tfjob_training_runs_the_worker_command_and_copies_the_model(
    tmp_path: Path, prepared_breast_cancer: PreparedData
) -> None:
    """The fake TFJob runs the rendered pod command; the chief's model comes back."""
    shared = tmp_path / "shared"
    shared.mkdir()
    training = quick_config(
        training={
            "framework": "tensorflow",
            "backend": "tfjob",
            "workers": 1,
            "epochs": 3,
            "hidden_units": [8],
            "cluster": {"shared_path": str(shared)},
        }
    ).training

    def run_job(body: dict) -> None:
        # What the operator does for worker 0: set TF_CONFIG, run the pod's command
        # (the image has `python` on PATH; here it is this interpreter).
        (container,) = body["spec"]["tfReplicaSpecs"]["Worker"]["template"]["spec"][
            "containers"
        ]
        tf_config = {
            "cluster": {"worker": [f"127.0.0.1:{free_port()}"]},
            "task": {"type": "worker", "index": 0},
        }
        env = {**os.environ, "TF_CONFIG": json.dumps(tf_config)}
        command = [sys.executable, *container["command"][1:]]
        subprocess.run(command, env=env, check=True, timeout=300)

    schema, transform = prepared_breast_cancer.schema, prepared_breast_cancer.transform
    splits = prepared_breast_cancer.splits
    arrays = TrainingArrays(
        train_x=transform.apply(splits["train"]),
        train_y=schema.labels(splits["train"]),
        validation_x=transform.apply(splits["validation"]),
        validation_y=schema.labels(splits["validation"]),
    )
    custom = FakeCustomObjects(["Running", "Succeeded"], on_create=run_job)
    model_dir = tmp_path / "model"
    metrics = run_tfjob_training(
        training,
        arrays=arrays,
        task="binary",
        model_dir=model_dir,
        custom_api=custom,
        core_api=FakeCore([]),
    )
    assert custom.created[0]["plural"] == "tfjobs"
    assert metrics["epochs"] == 3
    assert metrics["replica_max_weight_diff"] == 0.0
    assert (model_dir / "model.tflite").stat().st_size > 0
    assert (model_dir / "model.keras").exists()
    (job_dir,) = shared.iterdir()
    assert (job_dir / "training.json").is_file() and (job_dir / "arrays.npz").is_file()


def test_backend_must_fit_framework() -> None:
    """A TFJob cannot train PyTorch, nor a TrainJob TensorFlow."""
    with pytest.raises(ConfigError, match="backend 'tfjob' does not run framework"):
        PlumbConfig.from_json('{"training": {"backend": "tfjob"}}')
    with pytest.raises(ConfigError, match="backend 'trainjob' does not run framework"):
        PlumbConfig.from_json(
            '{"training": {"backend": "trainjob", "framework": "tensorflow"}}'
        )


class FakeCustomObjects:
    """Answers create/get like the API server for one job (no server runs here)."""

    def __init__(
        self, states: list[str], on_create: Any = None, create_error: Any = None
    ) -> None:
        self.states = list(states)
        self.on_create = on_create
        self.create_error = create_error
        self.created: list[dict] = []

    def create_namespaced_custom_object(self, **kwargs: Any) -> dict:
        if self.create_error is not None:
            raise self.create_error
        self.created.append(kwargs)
        if self.on_create is not None:
            self.on_create(kwargs["body"])
        return kwargs["body"]

    def get_namespaced_custom_object(self, **kwargs: Any) -> dict:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        conditions = (
            []
            if state == "Pending"
            else [{"type": state, "status": "True", "message": f"job is {state}"}]
        )
        return {"status": {"conditions": conditions}}


def _pod(name: str, exit_code: int, finished_minute: int, message: str) -> Any:
    terminated = k8s.V1ContainerStateTerminated(
        exit_code=exit_code,
        reason="Error" if exit_code else "Completed",
        message=message,
        finished_at=dt.datetime(2026, 1, 1, 0, finished_minute, tzinfo=dt.UTC),
    )
    return k8s.V1Pod(
        metadata=k8s.V1ObjectMeta(name=name),
        status=k8s.V1PodStatus(
            container_statuses=[
                k8s.V1ContainerStatus(
                    name="node",
                    image="i",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=k8s.V1ContainerState(terminated=terminated),
                )
            ]
        ),
    )


class FakeCore:
    """Lists the job's pods like CoreV1Api.list_namespaced_pod (no server runs here)."""

    def __init__(self, pods: list[Any]) -> None:
        self.pods = pods
        self.selectors: list[str] = []

    def list_namespaced_pod(self, *, namespace: str, label_selector: str) -> Any:
        self.selectors.append(label_selector)
        return SimpleNamespace(items=self.pods)


def _body() -> dict:
    return render_trainjob(_cluster_training(), name="t1", spec_path="/s.json")


def test_wait_returns_when_job_completes(caplog: pytest.LogCaptureFixture) -> None:
    """Pending -> Created -> Complete: created once, each state logged once."""
    custom = FakeCustomObjects(["Pending", "Created", "Created", "Complete"])
    caplog.set_level("INFO", logger="components.train.cluster")
    create_and_wait(
        _body(),
        backend="trainjob",
        custom_api=custom,
        core_api=FakeCore([]),
        poll_seconds=0,
        timeout_seconds=60,
        sleep=lambda _: None,
    )
    (created,) = custom.created
    assert (
        created["plural"] == "trainjobs" and created["group"] == "trainer.kubeflow.org"
    )
    states = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("TrainJob")
    ]
    assert states == [
        "TrainJob t1: Pending",
        "TrainJob t1: Created (job is Created)",
        "TrainJob t1: Complete (job is Complete)",
    ]


def test_failed_job_reports_first_failing_worker() -> None:
    """A Failed job raises with the reason of the worker that failed first."""
    core = FakeCore(
        [
            _pod("t1-node-0-1", 137, 7, "killed after the other worker failed"),
            _pod("t1-node-0-0", 1, 5, "RuntimeError: CUDA out of memory"),
            _pod("t1-node-0-2", 0, 9, ""),
        ]
    )
    with pytest.raises(
        TrainingFailedError,
        match="t1-node-0-0: Error .exit code 1.: RuntimeError: CUDA out of memory",
    ):
        create_and_wait(
            _body(),
            backend="trainjob",
            custom_api=FakeCustomObjects(["Pending", "Failed"]),
            core_api=core,
            poll_seconds=0,
            timeout_seconds=60,
            sleep=lambda _: None,
        )
    assert core.selectors == ["jobset.sigs.k8s.io/jobset-name=t1"]


def test_wait_times_out() -> None:
    """A job that never finishes fails the component after the timeout."""
    with pytest.raises(TrainingFailedError, match="did not finish within 0 s"):
        create_and_wait(
            _body(),
            backend="trainjob",
            custom_api=FakeCustomObjects(["Pending"]),
            core_api=FakeCore([]),
            poll_seconds=0,
            timeout_seconds=0,
            sleep=lambda _: None,
        )


def test_create_error_keeps_api_details() -> None:
    """A refused create names the status, reason and the API server's body."""
    error = k8s.ApiException(status=403, reason="Forbidden")
    error.body = "trainjobs is forbidden"
    with pytest.raises(
        TrainingFailedError, match="403 Forbidden: trainjobs is forbidden"
    ):
        create_and_wait(
            _body(),
            backend="trainjob",
            custom_api=FakeCustomObjects(["Pending"], create_error=error),
            core_api=FakeCore([]),
            poll_seconds=0,
            timeout_seconds=60,
            sleep=lambda _: None,
        )


def test_cluster_training_stages_runs_and_reads_back(
    tmp_path: Path,
    prepared_breast_cancer: PreparedData,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Staged data -> job -> rank 0's result read back from the shared path."""
    training = quick_config(
        training={
            "workers": 1,
            "epochs": 5,
            "backend": "pytorchjob",
            "cluster": {"shared_path": str(tmp_path)},
        }
    ).training
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)

    def run_job(body: dict) -> None:
        # The "cluster" runs plumb's real worker on the spec the command names.
        command = body["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"][
            "containers"
        ][0]["command"]
        run_worker(WorkerSpec.read(command[-1]))

    schema, transform = prepared_breast_cancer.schema, prepared_breast_cancer.transform
    splits = prepared_breast_cancer.splits
    data = TrainingData(
        train_x=transform.apply(splits["train"]),
        train_y=schema.labels(splits["train"]),
        validation_x=transform.apply(splits["validation"]),
        validation_y=schema.labels(splits["validation"]),
    )
    custom = FakeCustomObjects(["Running", "Succeeded"], on_create=run_job)
    state, metrics = run_cluster_training(
        training, data=data, task="binary", custom_api=custom, core_api=FakeCore([])
    )
    assert metrics["epochs"] == 5
    assert metrics["validation_metric"] >= 0.95
    assert state and all(not name.startswith("module.") for name in state)
    (staged,) = [p for p in tmp_path.iterdir() if p.name.startswith("plumb-train-")]
    assert (staged / "spec.json").is_file()


def test_cluster_training_needs_the_shared_path(tmp_path: Path) -> None:
    """Without the shared volume mounted the component stops with the fix."""
    training = quick_config(
        training={
            "backend": "trainjob",
            "cluster": {"shared_path": str(tmp_path / "no")},
        }
    ).training
    with pytest.raises(PlumbError, match="is not a directory.*volume_claim"):
        run_cluster_training(training, data=None, task="binary")  # type: ignore[arg-type]
    assert not os.path.exists(tmp_path / "no")
