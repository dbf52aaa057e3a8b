"""Training on a cluster: render the training job, create it, and wait for it.

With `training.backend` set to a cluster job, the train component does not train in its
own pod. It stages the transformed splits and a worker spec under
`training.cluster.shared_path` (a volume the component pod and the workers both mount),
creates one of
- a Kubeflow Trainer v2 `TrainJob` (trainer.kubeflow.org/v1alpha1, runtime
  `torch-distributed` by default): backend `trainjob`;
- a Kubeflow Training Operator v1 `PyTorchJob` (kubeflow.org/v1): backend `pytorchjob`;
- a Kubeflow Training Operator v1 `TFJob` (kubeflow.org/v1): backend `tfjob`, whose
  worker pods run `python -m components.train.tf_workers --job-dir DIR`, the entry point
  the local TensorFlow launcher starts, on a job folder staged the same way
  (`run_tfjob_training`);
then streams the job's conditions into the log until it succeeds (the component reads
rank 0's result back from the shared path) or fails (the component fails with the
first failing worker's reason). Objects are built with the kubeflow SDK models
(`kubeflow_trainer_api` for v2, `kubeflow.training` for v1), so a misspelled field fails
when rendered.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from kubeflow.training import models as v1
from kubeflow.training.api_client import ApiClient as TrainingApiClient
from kubeflow_trainer_api import models as v2
from kubernetes import client as k8s

from components.common.artifacts import (
    KERAS_MODEL_FILE,
    TFLITE_MODEL_FILE,
    read_json,
)
from components.common.config import TrainingConfig
from components.common.errors import PlumbError
from components.train import tf_workers
from components.train.launch import TrainingFailedError
from components.train.loop import TrainingData
from components.train.tf_train import TrainingArrays
from components.train.worker import ERROR_FILE, RESULT_FILE, SPEC_FILE, WorkerSpec

logger = logging.getLogger(__name__)

WORKER_MODULE = "components.train.worker"
SHARED_VOLUME = "plumb-shared"
TRAINJOB_CONTAINER = "node"
"""Trainer container name in the torch-distributed ClusterTrainingRuntime."""
TMP_VOLUME_SIZE = "1Gi"
TMP_VOLUME = {"name": "tmp", "emptyDir": {"sizeLimit": TMP_VOLUME_SIZE}}
"""Writable /tmp for torchrun's log folders: the root filesystem is read-only."""
RESTRICTED_POD_SECURITY: dict[str, dict[str, Any]] = {
    "pod": {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "container": {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    },
}
"""Worker pods meet the "restricted" Pod Security Standard as the non-root user 10001
of plumb's images; checkpoints go to the shared volume, scratch files to /tmp."""


@dataclass(frozen=True)
class JobKind:
    """Where a kind of training job lives in the Kubernetes API."""

    group: str
    version: str
    kind: str
    plural: str
    pod_label: str
    """Label every pod of the job carries, whose value is the job's name."""

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


JOB_KINDS = {
    "trainjob": JobKind(
        "trainer.kubeflow.org",
        "v1alpha1",
        "TrainJob",
        "trainjobs",
        "jobset.sigs.k8s.io/jobset-name",
    ),
    "pytorchjob": JobKind(
        "kubeflow.org",
        "v1",
        "PyTorchJob",
        "pytorchjobs",
        "training.kubeflow.org/job-name",
    ),
    "tfjob": JobKind(
        "kubeflow.org", "v1", "TFJob", "tfjobs", "training.kubeflow.org/job-name"
    ),
}


def torchrun_worker_command(spec_path: str, *, max_restarts: int) -> list[str]:
    """Command of a PyTorch worker pod: torchrun reads nodes and ranks from `PET_*`."""
    return [
        "torchrun",
        f"--max-restarts={max_restarts}",
        "-m",
        WORKER_MODULE,
        spec_path,
    ]


def _resource_limits(training: TrainingConfig) -> dict[str, str]:
    limits = {"cpu": training.cluster.cpu, "memory": training.cluster.memory}
    if training.gpus_per_worker:
        limits[training.accelerator_type] = str(training.gpus_per_worker)
    return limits


def render_trainjob(training: TrainingConfig, *, name: str, spec_path: str) -> dict:
    """A Kubeflow Trainer v2 TrainJob running plumb's worker with torchrun."""
    cluster = training.cluster
    limits = _resource_limits(training)
    trainer = v2.TrainerV1alpha1Trainer(
        image=cluster.image,
        command=torchrun_worker_command(spec_path, max_restarts=training.max_restarts),
        numNodes=training.workers,
        numProcPerNode=max(training.gpus_per_worker, 1),
        resourcesPerNode=v2.IoK8sApiCoreV1ResourceRequirements.from_dict(
            {"limits": limits, "requests": limits}
        ),
    )
    restricted = RESTRICTED_POD_SECURITY
    pod_patch = v2.TrainerV1alpha1PodSpecPatch(
        nodeSelector=cluster.node_selector or None,
        tolerations=[v2.IoK8sApiCoreV1Toleration(**t) for t in cluster.tolerations]
        or None,
        securityContext=v2.IoK8sApiCoreV1PodSecurityContext.from_dict(
            restricted["pod"]
        ),
    )
    volumes = [v2.IoK8sApiCoreV1Volume.from_dict(TMP_VOLUME)]
    mounts = [v2.IoK8sApiCoreV1VolumeMount(name=TMP_VOLUME["name"], mountPath="/tmp")]
    if cluster.volume_claim:
        volumes.insert(
            0,
            v2.IoK8sApiCoreV1Volume(
                name=SHARED_VOLUME,
                persistentVolumeClaim=v2.IoK8sApiCoreV1PersistentVolumeClaimVolumeSource(
                    claimName=cluster.volume_claim
                ),
            ),
        )
        mounts.insert(
            0,
            v2.IoK8sApiCoreV1VolumeMount(
                name=SHARED_VOLUME, mountPath=cluster.shared_path
            ),
        )
    pod_patch.volumes = volumes
    pod_patch.containers = [
        v2.TrainerV1alpha1ContainerPatch(
            name=TRAINJOB_CONTAINER,
            volumeMounts=mounts,
            securityContext=v2.IoK8sApiCoreV1SecurityContext.from_dict(
                restricted["container"]
            ),
        )
    ]
    patch = v2.TrainerV1alpha1RuntimePatch(
        manager="plumb.dev/train",
        trainingRuntimeSpec=v2.TrainerV1alpha1TrainingRuntimeSpecPatch(
            template=v2.TrainerV1alpha1JobSetTemplatePatch(
                spec=v2.TrainerV1alpha1JobSetSpecPatch(
                    replicatedJobs=[
                        v2.TrainerV1alpha1ReplicatedJobPatch(
                            name=TRAINJOB_CONTAINER,
                            template=v2.TrainerV1alpha1JobTemplatePatch(
                                spec=v2.TrainerV1alpha1JobSpecPatch(
                                    template=v2.TrainerV1alpha1PodTemplatePatch(
                                        spec=pod_patch
                                    )
                                )
                            ),
                        )
                    ]
                )
            )
        ),
    )
    kind = JOB_KINDS["trainjob"]
    job = v2.TrainerV1alpha1TrainJob(
        apiVersion=kind.api_version,
        kind=kind.kind,
        metadata=v2.IoK8sApimachineryPkgApisMetaV1ObjectMeta(
            name=name,
            namespace=cluster.namespace,
            labels={"app.kubernetes.io/part-of": "plumb"},
        ),
        spec=v2.TrainerV1alpha1TrainJobSpec(
            runtimeRef=v2.TrainerV1alpha1RuntimeRef(name=cluster.runtime),
            trainer=trainer,
            runtimePatches=[patch],
        ),
    )
    return job.to_dict()


def _pod_template(
    training: TrainingConfig, *, container_name: str, command: list[str]
) -> k8s.V1PodTemplateSpec:
    cluster = training.cluster
    limits = _resource_limits(training)
    mounts = [k8s.V1VolumeMount(name=TMP_VOLUME["name"], mount_path="/tmp")]
    volumes = [
        k8s.V1Volume(
            name=TMP_VOLUME["name"],
            empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=TMP_VOLUME_SIZE),
        )
    ]
    if cluster.volume_claim:
        mounts.insert(
            0, k8s.V1VolumeMount(name=SHARED_VOLUME, mount_path=cluster.shared_path)
        )
        volumes.insert(
            0,
            k8s.V1Volume(
                name=SHARED_VOLUME,
                persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
                    claim_name=cluster.volume_claim
                ),
            ),
        )
    restricted = RESTRICTED_POD_SECURITY
    tolerations = [
        k8s.V1Toleration(
            key=t.get("key"),
            operator=t.get("operator"),
            value=t.get("value"),
            effect=t.get("effect"),
        )
        for t in cluster.tolerations
    ]
    return k8s.V1PodTemplateSpec(
        metadata=k8s.V1ObjectMeta(labels={"app.kubernetes.io/part-of": "plumb"}),
        spec=k8s.V1PodSpec(
            containers=[
                k8s.V1Container(
                    name=container_name,
                    image=cluster.image,
                    command=command,
                    resources=k8s.V1ResourceRequirements(
                        limits=limits, requests=limits
                    ),
                    volume_mounts=mounts,
                    security_context=k8s.V1SecurityContext(
                        allow_privilege_escalation=False,
                        read_only_root_filesystem=True,
                        run_as_non_root=True,
                        capabilities=k8s.V1Capabilities(drop=["ALL"]),
                        seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
                    ),
                )
            ],
            security_context=k8s.V1PodSecurityContext(
                run_as_non_root=True,
                run_as_user=restricted["pod"]["runAsUser"],
                run_as_group=restricted["pod"]["runAsGroup"],
                fs_group=restricted["pod"]["fsGroup"],
                seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
            ),
            node_selector=cluster.node_selector or None,
            tolerations=tolerations or None,
            volumes=volumes,
        ),
    )


def render_pytorchjob(training: TrainingConfig, *, name: str, spec_path: str) -> dict:
    """A Training Operator v1 PyTorchJob: one Master and `workers - 1` Worker pods."""
    # The operator sets PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK, MASTER_ADDR and
    # MASTER_PORT in every pod; Kubernetes expands $(VAR) in the command.
    command = [
        "torchrun",
        "--nnodes=$(PET_NNODES)",
        "--nproc-per-node=$(PET_NPROC_PER_NODE)",
        "--node-rank=$(PET_NODE_RANK)",
        "--master-addr=$(MASTER_ADDR)",
        "--master-port=$(MASTER_PORT)",
        f"--max-restarts={training.max_restarts}",
        "-m",
        WORKER_MODULE,
        spec_path,
    ]
    template = _pod_template(training, container_name="pytorch", command=command)
    replicas = {
        "Master": v1.KubeflowOrgV1ReplicaSpec(
            replicas=1, restart_policy="OnFailure", template=template
        )
    }
    if training.workers > 1:
        replicas["Worker"] = v1.KubeflowOrgV1ReplicaSpec(
            replicas=training.workers - 1, restart_policy="OnFailure", template=template
        )
    kind = JOB_KINDS["pytorchjob"]
    job = v1.KubeflowOrgV1PyTorchJob(
        api_version=kind.api_version,
        kind=kind.kind,
        metadata=k8s.V1ObjectMeta(name=name, namespace=training.cluster.namespace),
        spec=v1.KubeflowOrgV1PyTorchJobSpec(
            nproc_per_node=str(max(training.gpus_per_worker, 1)),
            pytorch_replica_specs=replicas,
            run_policy=v1.KubeflowOrgV1RunPolicy(
                backoff_limit=training.max_restarts, clean_pod_policy="None"
            ),
        ),
    )
    return TrainingApiClient().sanitize_for_serialization(job)


def render_tfjob(training: TrainingConfig, *, name: str, job_dir: str) -> dict:
    """A Training Operator v1 TFJob with `workers` Worker pods.

    Each pod runs the TensorFlow worker entry point on the staged `job_dir`; the
    operator sets `TF_CONFIG`, from which the worker takes its index (worker 0 is the
    chief). A pod restarted after a failure resumes from the job's latest checkpoint.
    """
    template = _pod_template(
        training,
        container_name="tensorflow",
        command=tf_workers.worker_command(job_dir),
    )
    kind = JOB_KINDS["tfjob"]
    job = v1.KubeflowOrgV1TFJob(
        api_version=kind.api_version,
        kind=kind.kind,
        metadata=k8s.V1ObjectMeta(name=name, namespace=training.cluster.namespace),
        spec=v1.KubeflowOrgV1TFJobSpec(
            tf_replica_specs={
                "Worker": v1.KubeflowOrgV1ReplicaSpec(
                    replicas=training.workers,
                    restart_policy="OnFailure",
                    template=template,
                )
            },
            run_policy=v1.KubeflowOrgV1RunPolicy(
                backoff_limit=training.max_restarts, clean_pod_policy="None"
            ),
        ),
    )
    return TrainingApiClient().sanitize_for_serialization(job)


def parse_v1_job(body: dict, kind: str) -> Any:
    """Read a v1 job dict back into its SDK model (the inverse of rendering)."""

    class _Response:
        data = json.dumps(body)

    klass = {"PyTorchJob": "KubeflowOrgV1PyTorchJob", "TFJob": "KubeflowOrgV1TFJob"}[
        kind
    ]
    return TrainingApiClient().deserialize(_Response(), klass)


def create_and_wait(
    body: dict,
    *,
    backend: str,
    custom_api: Any,
    core_api: Any,
    poll_seconds: float,
    timeout_seconds: float,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Create the job, log each status change, return when it succeeds.

    Args:
        body: The rendered job.
        backend: `trainjob`, `pytorchjob` or `tfjob`.
        custom_api: A `kubernetes.client.CustomObjectsApi`.
        core_api: A `kubernetes.client.CoreV1Api` (to find the failing worker).
        poll_seconds: Seconds between status reads.
        timeout_seconds: Give up after this long.
        sleep: Waits between polls (tests pass a no-op).

    Raises:
        TrainingFailedError: The job failed (message: the first failing worker's
            reason) or did not finish in time.
    """
    kind = JOB_KINDS[backend]
    namespace = body["metadata"]["namespace"]
    name = body["metadata"]["name"]
    try:
        custom_api.create_namespaced_custom_object(
            group=kind.group,
            version=kind.version,
            namespace=namespace,
            plural=kind.plural,
            body=body,
        )
    except k8s.ApiException as err:
        raise TrainingFailedError(
            f"could not create {kind.kind} {namespace}/{name}: {err.status} {err.reason}: "
            f"{err.body}"
        ) from err
    logger.info("Created %s %s/%s; waiting for it", kind.kind, namespace, name)

    deadline = time.monotonic() + timeout_seconds
    last_state = ""
    while True:
        job = custom_api.get_namespaced_custom_object(
            group=kind.group,
            version=kind.version,
            namespace=namespace,
            plural=kind.plural,
            name=name,
        )
        state, message = job_state(job)
        if state != last_state:
            detail = f" ({message})" if message else ""
            logger.info("%s %s: %s%s", kind.kind, name, state, detail)
            last_state = state
        if state in ("Complete", "Succeeded"):
            return
        if state == "Failed":
            reason = first_failed_worker(
                core_api, namespace=namespace, kind=kind, name=name
            )
            raise TrainingFailedError(
                f"{kind.kind} {namespace}/{name} failed: {reason or message}"
            )
        if time.monotonic() > deadline:
            raise TrainingFailedError(
                f"{kind.kind} {namespace}/{name} did not finish within "
                f"{timeout_seconds:.0f} s (training.cluster.timeout_seconds); last state "
                f"{state or 'unknown'}"
            )
        sleep(poll_seconds)


def job_state(job: dict) -> tuple[str, str]:
    """The job's latest true condition (type, message); ('Pending', '') before any."""
    conditions = [
        c
        for c in (job.get("status") or {}).get("conditions") or []
        if c.get("status") == "True"
    ]
    for terminal in ("Failed", "Complete", "Succeeded"):
        for condition in conditions:
            if condition.get("type") == terminal:
                return terminal, condition.get("message", "")
    if conditions:
        latest = conditions[-1]
        return str(latest.get("type")), latest.get("message", "")
    return "Pending", ""


def first_failed_worker(
    core_api: Any, *, namespace: str, kind: JobKind, name: str
) -> str:
    """`pod: reason (exit code N): message` of the worker that failed first, or ''."""
    pods = core_api.list_namespaced_pod(
        namespace=namespace, label_selector=f"{kind.pod_label}={name}"
    ).items
    failures = []
    for pod in pods:
        for status in pod.status.container_statuses or []:
            terminated = status.state.terminated if status.state else None
            if terminated is None or terminated.exit_code == 0:
                continue
            failures.append(
                (
                    terminated.finished_at,
                    f"worker pod {pod.metadata.name}: {terminated.reason} (exit code "
                    f"{terminated.exit_code}): {(terminated.message or '').strip()}",
                )
            )
    if not failures:
        return ""
    failures.sort(key=lambda item: (item[0] is None, item[0]))
    return failures[0][1]


def run_cluster_training(
    training: TrainingConfig,
    *,
    data: TrainingData,
    task: str,
    custom_api: Any = None,
    core_api: Any = None,
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """Stage the data, run the job on the cluster, return rank 0's weights and metrics.

    Raises:
        PlumbError: The shared path is not mounted here, or a worker found bad input.
        TrainingFailedError: The job failed or timed out.
    """
    shared = _shared_path(training)
    name = f"plumb-train-{uuid.uuid4().hex[:8]}"
    run_dir = shared / name
    data.save(run_dir / "data")
    spec = WorkerSpec(
        training=training.model_dump(),
        task=task,
        data_dir=str(run_dir / "data"),
        run_dir=str(run_dir),
        device="cuda" if training.gpus_per_worker else "cpu",
    )
    spec.write(run_dir / SPEC_FILE)
    if training.backend == "trainjob":
        body = render_trainjob(training, name=name, spec_path=str(run_dir / SPEC_FILE))
    elif training.backend == "pytorchjob":
        body = render_pytorchjob(
            training, name=name, spec_path=str(run_dir / SPEC_FILE)
        )
    else:
        raise PlumbError(
            f"training.backend {training.backend!r} does not train PyTorch; use "
            "'trainjob' or 'pytorchjob'"
        )
    _create_and_wait(training, body=body, custom_api=custom_api, core_api=core_api)
    if (run_dir / ERROR_FILE).is_file():
        raise PlumbError(read_json(run_dir / ERROR_FILE)["error"])
    payload = torch.load(run_dir / RESULT_FILE, map_location="cpu", weights_only=True)
    return payload["state_dict"], payload["metrics"]


def run_tfjob_training(
    training: TrainingConfig,
    *,
    arrays: TrainingArrays,
    task: str,
    model_dir: Path,
    custom_api: Any = None,
    core_api: Any = None,
) -> dict[str, float]:
    """Stage a TensorFlow job folder, run it as a TFJob, copy the chief's model back.

    The job folder on the shared path is what the local launcher writes
    (`tf_workers.stage_job`); the chief exports into its `model/` subfolder, and the
    TFLite and Keras files are copied from there into `model_dir`.

    Returns:
        The chief's metrics plus `replica_max_weight_diff`.

    Raises:
        PlumbError: The shared path is not mounted here, or a worker found bad input.
        TrainingFailedError: The job failed or timed out.
    """
    shared = _shared_path(training)
    name = f"plumb-train-{uuid.uuid4().hex[:8]}"
    job_dir = shared / name
    exported = job_dir / "model"
    tf_workers.stage_job(
        training, arrays=arrays, task=task, job_dir=job_dir, model_dir=exported
    )
    body = render_tfjob(training, name=name, job_dir=str(job_dir))
    _create_and_wait(training, body=body, custom_api=custom_api, core_api=core_api)
    reported = sorted(job_dir.glob("error-*.json"))
    if reported:
        raise PlumbError(read_json(reported[0])["message"])
    model_dir.mkdir(parents=True, exist_ok=True)
    for file_name in (TFLITE_MODEL_FILE, KERAS_MODEL_FILE):
        source = exported / file_name
        if source.is_dir():
            shutil.copytree(source, model_dir / file_name, dirs_exist_ok=True)
        else:
            shutil.copy2(source, model_dir / file_name)
    metrics = read_json(job_dir / tf_workers.METRICS_FILE)
    metrics["replica_max_weight_diff"] = tf_workers.replica_weight_diff(
        job_dir, workers=training.workers
    )
    return {key: float(value) for key, value in metrics.items()}


def _shared_path(training: TrainingConfig) -> Path:
    shared = Path(training.cluster.shared_path)
    if not shared.is_dir():
        raise PlumbError(
            f"training.cluster.shared_path {str(shared)!r} is not a directory in the "
            "component's pod; mount a ReadWriteMany volume there (training.cluster."
            "volume_claim) or use training.backend 'local'"
        )
    return shared


def _create_and_wait(
    training: TrainingConfig, *, body: dict, custom_api: Any, core_api: Any
) -> None:
    """`create_and_wait` with the in-cluster API clients unless test fakes are given."""
    if custom_api is None or core_api is None:
        from kubernetes import config as k8s_config

        k8s_config.load_incluster_config()
        custom_api, core_api = k8s.CustomObjectsApi(), k8s.CoreV1Api()
    create_and_wait(
        body,
        backend=training.backend,
        custom_api=custom_api,
        core_api=core_api,
        poll_seconds=training.cluster.poll_seconds,
        timeout_seconds=training.cluster.timeout_seconds,
    )
