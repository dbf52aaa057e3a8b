"""The retraining trigger: drift that holds for K windows starts the training pipeline.

`RetrainTrigger.observe` is told each closed window's verdict. After
`retrain_after_windows` drifted windows in a row for one InferenceService endpoint it
fires the configured action (a webhook POST, or a `kfp.Client` run of the uploaded
training pipeline), then stays quiet for `retrain_cooldown_seconds`. Its counters live
in `<state_dir>/trigger.json`, so a restart neither forgets nor repeats a trigger.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from components.common.config import MonitoringConfig

logger = logging.getLogger(__name__)

WEBHOOK_TOKEN_ENV = "PLUMB_MONITOR_WEBHOOK_TOKEN"
"""Environment variable whose value, when set, is sent as the webhook's bearer token."""
WEBHOOK_TIMEOUT_SECONDS = 10.0


@dataclass
class EndpointState:
    """Trigger bookkeeping of one InferenceService endpoint."""

    consecutive_drifted: int = 0
    last_fired_at: float | None = None
    fired: int = 0
    recent_windows: list[str] = field(default_factory=list)


@dataclass
class TriggerOutcome:
    """What happened when the trigger fired."""

    action: str
    outcome: str
    detail: str


class RetrainTrigger:
    """Counts drifted windows per endpoint and fires the retraining action."""

    def __init__(self, config: MonitoringConfig, state_path: Path) -> None:
        self.config = config
        self._path = state_path
        self._states: dict[str, EndpointState] = {}
        if state_path.exists():
            raw = json.loads(state_path.read_text(encoding="utf-8"))
            self._states = {key: EndpointState(**value) for key, value in raw.items()}

    def state(self, key: str) -> EndpointState:
        return self._states.setdefault(key, EndpointState())

    def observe(
        self,
        key: str,
        *,
        drifted: bool,
        window_id: str,
        summary: dict[str, Any],
        now: float | None = None,
    ) -> TriggerOutcome | None:
        """Record one closed window's verdict; fire the action when drift holds.

        Returns:
            The outcome when the trigger fired (or would have, in dry-run), else None.
        """
        now = time.time() if now is None else now
        state = self.state(key)
        if drifted:
            state.consecutive_drifted += 1
            state.recent_windows = [*state.recent_windows, window_id][
                -self.config.retrain_after_windows :
            ]
        else:
            state.consecutive_drifted = 0
            state.recent_windows = []
        outcome = None
        cooling = (
            state.last_fired_at is not None
            and now - state.last_fired_at < self.config.retrain_cooldown_seconds
        )
        if state.consecutive_drifted >= self.config.retrain_after_windows:
            if cooling:
                logger.info(
                    "Drift held for %d windows on %s; cooling down until %.0f s after "
                    "the last trigger",
                    state.consecutive_drifted,
                    key,
                    self.config.retrain_cooldown_seconds,
                )
            else:
                outcome = self._fire(key, state=state, summary=summary)
                if outcome.outcome != "error":
                    state.last_fired_at = now
                    state.fired += 1
                    state.consecutive_drifted = 0
        self._save()
        return outcome

    def _fire(
        self, key: str, *, state: EndpointState, summary: dict[str, Any]
    ) -> TriggerOutcome:
        action = self.config.retrain_action
        payload = {
            "reason": "drift",
            "endpoint_key": key,
            "consecutive_drifted_windows": state.consecutive_drifted,
            "windows": state.recent_windows,
            **summary,
        }
        if self.config.retrain_dry_run:
            logger.warning(
                "Dry run: would retrain (%s) for %s after %d drifted windows: %s",
                action,
                key,
                state.consecutive_drifted,
                json.dumps(payload),
            )
            return TriggerOutcome(action=action, outcome="dry_run", detail="")
        try:
            if action == "webhook":
                detail = self._post_webhook(payload)
            elif action == "kfp":
                detail = self._submit_run(payload)
            else:
                detail = "no action configured"
        except (httpx.HTTPError, OSError, RuntimeError, ValueError) as err:
            logger.exception("Retraining trigger %s failed for %s", action, key)
            return TriggerOutcome(action=action, outcome="error", detail=str(err))
        logger.warning(
            "Retraining triggered (%s) for %s after %d drifted windows: %s",
            action,
            key,
            state.consecutive_drifted,
            detail,
        )
        return TriggerOutcome(action=action, outcome="fired", detail=detail)

    def _post_webhook(self, payload: dict[str, Any]) -> str:
        assert self.config.retrain_webhook_url is not None  # checked by the config
        headers = {}
        token = os.environ.get(WEBHOOK_TOKEN_ENV)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        response = httpx.post(
            self.config.retrain_webhook_url,
            json=payload,
            headers=headers,
            timeout=WEBHOOK_TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        return f"POST {self.config.retrain_webhook_url} -> {response.status_code}"

    def _submit_run(self, payload: dict[str, Any]) -> str:
        import kfp

        client = kfp.Client(host=self.config.kfp_host)
        pipeline_id = client.get_pipeline_id(self.config.kfp_pipeline_name)
        if pipeline_id is None:
            raise ValueError(
                f"no pipeline named {self.config.kfp_pipeline_name!r} in Kubeflow "
                f"Pipelines at {self.config.kfp_host}; upload pipelines/training.yaml "
                "under that name"
            )
        versions = client.list_pipeline_versions(
            pipeline_id, page_size=1, sort_by="created_at desc"
        )
        version_id = versions.pipeline_versions[0].pipeline_version_id
        experiment = client.create_experiment(self.config.kfp_experiment)
        # The run takes the pipeline's default config_json, the one it was compiled with.
        run = client.run_pipeline(
            experiment_id=experiment.experiment_id,
            job_name=f"retrain-{payload['endpoint_key']}-{int(time.time())}",
            pipeline_id=pipeline_id,
            version_id=version_id,
        )
        return f"KFP run {run.run_id} of {self.config.kfp_pipeline_name}"

    def _save(self) -> None:
        temporary = self._path.with_suffix(".tmp")
        data = {key: asdict(state) for key, state in self._states.items()}
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, self._path)
