"""V2 over gRPC: kserve's protobuf request turned into the predictor's input."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from kserve import InferInput, InferRequest

from components.preprocess.lib import PreparedData
from components.serving.model import PlumbModel


def _probabilities(response: Any) -> list[float]:
    if isinstance(response, dict):
        return [row["probability"] for row in response["predictions"]]
    return list(response.outputs[0].data)


@pytest.mark.parametrize("binary", [True, False])
def test_grpc_requests_answer_as_v1(
    binary: bool, trained_model_dir: Path, prepared_breast_cancer: PreparedData
) -> None:
    """V2 over gRPC, values as raw bytes (kserve's client default) or typed lists.

    The request goes through the protobuf message and kserve's `InferRequest.from_grpc`,
    the path kserve's gRPC servicer takes; no gRPC server is started, as kserve binds it
    on every interface and tests talk to 127.0.0.1 only.
    """
    schema = prepared_breast_cancer.schema
    rows = prepared_breast_cancer.splits["test"][schema.feature_names].head(3)
    inputs = []
    for name in schema.feature_names:
        tensor = InferInput(name, [len(rows)], "FP64")
        tensor.set_data_from_numpy(rows[name].to_numpy(np.float64), binary_data=binary)
        inputs.append(tensor)
    message = InferRequest(model_name="m", infer_inputs=inputs).to_grpc()
    assert bool(message.raw_input_contents) is binary
    request = InferRequest.from_grpc(message)

    model = PlumbModel("m", trained_model_dir)
    model.load()
    answer = asyncio.run(model.predict(request))
    expected = asyncio.run(model.predict({"instances": rows.values.tolist()}))
    np.testing.assert_allclose(
        _probabilities(answer), _probabilities(expected), rtol=0, atol=1e-6
    )
