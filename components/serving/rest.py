"""plumb's additions to kserve's REST server: quiet 4xx logs, a request body cap, a fast
V2 JSON path, and worker processes that are given time to start.

kserve 0.21 builds its FastAPI app in `RESTServer.create_application`, in this process
or, with `--workers > 1`, again in each spawned worker (`RESTServer.run`). Subclassing
`RESTServer` is the one hook that reaches both, so everything here is installed there:

- `client_error_handler`: kserve logs every refused request at ERROR with a full
  traceback. A bad request is the client's fault, not the server's: plumb logs it as
  one WARNING line (status, model, message). 5xx answers keep kserve's ERROR log with
  the traceback.
- `client_disconnect_handler`: a client that hangs up mid-body is one INFO line, not
  two ERROR tracebacks (kserve's and uvicorn's).
- `BodyLimitMiddleware`: a body over `max_body_bytes` is answered 413 before it is read;
  a batch over the row cap raises `RequestTooLargeError`, answered 413 by
  `client_error_handler`.
- `PlumbRESTServer.infer_v2`: kserve's V2 route decodes JSON with the standard library,
  validates every tensor value with pydantic and re-encodes the answer element by
  element (about 40 ms for 1,000 rows, most of the request); its binary-tensor decoder
  turns every value into a Python number. plumb decodes JSON with orjson and binary
  tensors as numpy views of the body, builds kserve's `InferRequest` directly and
  writes the answer with orjson. Malformed bodies still go through kserve's pydantic
  model, so they get the same 422 as before; CloudEvent requests go to kserve's route.
- `PlumbRESTServerMultiProcess`: kserve's parent kills a worker that does not answer a
  5 s liveness ping, starting from the moment it is spawned. Importing the serving
  stack and loading the model can take longer than that on a busy machine, so the
  worker was killed and respawned in a loop. plumb waits for each worker's first
  answer for up to `startup_timeout_seconds` before the 5 s ping applies.
"""

from __future__ import annotations

import logging
import time
from http import HTTPStatus
from socket import socket
from typing import Any

import numpy as np
import orjson
from cloudevents.sdk.converters.util import has_binary_headers
from fastapi import FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from kserve.constants.constants import INFERENCE_CONTENT_LENGTH_HEADER
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.logging import KSERVE_TRACE_LOGGER_NAME
from kserve.protocol.infer_type import (
    InferInput,
    InferRequest,
    InferResponse,
    RequestedOutput,
    deserialize_bytes_tensor,
    to_http_parameters,
)
from kserve.protocol.rest.multiprocess.server import (
    RESTServerMultiProcess,
    RESTServerProcess,
)
from kserve.protocol.rest.server import RESTServer
from kserve.protocol.rest.v2_datamodels import InferenceRequest
from kserve.protocol.rest.v2_endpoints import V2Endpoints
from kserve.utils.numpy_codec import to_np_dtype
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from components.common.logs import setup_logging
from components.serving.errors import RequestTooLargeError, http_status

logger = logging.getLogger(__name__)

DEFAULT_STARTUP_TIMEOUT_SECONDS = 120.0
_JSON_CONTENT_TYPES = ("application/json", "")
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def set_latency_logging(enabled: bool) -> None:
    """Turn kserve's per-request trace lines (timings of every request) on or off.

    Prometheus metrics at `/metrics` record the same latencies either way; the lines
    cost a noticeable share of a small request's CPU time.
    """
    level = logging.INFO if enabled else logging.WARNING
    logging.getLogger(KSERVE_TRACE_LOGGER_NAME).setLevel(level)


async def client_error_handler(request: Request, exc: Exception) -> Response:
    """Answer a refused request (4xx) and log it as one WARNING line, no traceback."""
    status = http_status(exc)
    model_name = request.path_params.get("model_name", "-")
    logger.warning(
        "%d %s %s (model %s): %s",
        int(status),
        request.method,
        request.url.path,
        model_name,
        exc,
    )
    return _json_response({"error": str(exc)}, status_code=int(status))


async def client_disconnect_handler(request: Request, exc: Exception) -> Response:
    """A client that closed its connection before sending the whole body: one INFO line.

    Nobody is left to read an answer; the 400 only ends the request for the app.
    """
    logger.info(
        "%s %s (model %s): the client closed the connection before sending its body",
        request.method,
        request.url.path,
        request.path_params.get("model_name", "-"),
    )
    return Response(status_code=int(HTTPStatus.BAD_REQUEST))


async def request_validation_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's 422 for a body that is not an inference request, logged like a 4xx."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    logger.warning(
        "422 %s %s (model %s): %s",
        request.method,
        request.url.path,
        request.path_params.get("model_name", "-"),
        "; ".join(
            f"{'.'.join(map(str, error.get('loc', ())))}: {error.get('msg')}"
            for error in errors
        ),
    )
    return await request_validation_exception_handler(request, exc)  # type: ignore[arg-type]


class PlumbRESTServer(RESTServer):
    """kserve's REST server with plumb's 4xx logging and V2 JSON path."""

    def _add_exception_handlers(self, app: FastAPI) -> None:
        super()._add_exception_handlers(app)
        for error_type in (InvalidInput, ModelNotFound, RequestTooLargeError):
            app.add_exception_handler(error_type, client_error_handler)
        app.add_exception_handler(RequestValidationError, request_validation_handler)
        app.add_exception_handler(ClientDisconnect, client_disconnect_handler)

    def _add_middlewares(self, app: FastAPI) -> None:
        super()._add_middlewares(app)
        # Added last, so it runs first: an oversized body is refused before any work.
        max_body_bytes = getattr(self, "max_body_bytes", None)
        if max_body_bytes is not None:
            app.add_middleware(BodyLimitMiddleware, max_body_bytes=max_body_bytes)

    def _register_endpoints(self, app: FastAPI) -> None:
        # Routes match in order: plumb's V2 infer goes before kserve's.
        self._kserve_v2 = V2Endpoints(self.dataplane, self.model_repository_extension)
        app.add_api_route(
            "/v2/models/{model_name}/infer",
            self.infer_v2,
            methods=["POST"],
            include_in_schema=False,
        )
        super()._register_endpoints(app)

    def run(self, sockets: list[socket] | None = None) -> None:
        """Serve in a spawned worker: configure plumb's logging there first."""
        setup_logging()
        set_latency_logging(getattr(self, "latency_logging", True))
        super().run(sockets=sockets)

    async def infer_v2(self, model_name: str, request: Request) -> Response:
        """V2 `/infer` with a JSON body, decoded and encoded with orjson."""
        if not await self.dataplane.model_ready(model_name, True):
            raise ModelNotReady(model_name)
        headers = dict(request.headers)
        body = await request.body()
        content_type = headers.get("content-type", "").split(";")[0].strip()
        json_length = headers.get(INFERENCE_CONTENT_LENGTH_HEADER)
        if json_length is not None:
            infer_request = _binary_infer_request(
                body, json_length=json_length, model_name=model_name
            )
        elif has_binary_headers(headers) or content_type not in _JSON_CONTENT_TYPES:
            return await self._kserve_infer_v2(request, model_name, body)
        else:
            infer_request = _infer_request(_loads(body), model_name=model_name)
        response, response_headers = await self.dataplane.infer(
            model_name=model_name, request=infer_request, headers=headers
        )
        response_headers.pop("content-length", None)
        response_headers.pop("content-type", None)
        if isinstance(response, InferResponse):
            content: Any = _response_body(response, requested=infer_request)
        else:
            content = response
        return _json_response(content, headers=response_headers)

    async def _kserve_infer_v2(
        self, request: Request, model_name: str, body: bytes
    ) -> Response:
        # CloudEvents and other content types: kserve's own route.
        result = await self._kserve_v2.infer(
            raw_request=request,
            raw_response=Response(),
            model_name=model_name,
            request_body=_validated(_loads(body)),
        )
        if isinstance(result, Response):
            return result
        return _json_response(jsonable_encoder(result))


def _json_response(
    content: Any, *, status_code: int = 200, headers: dict[str, str] | None = None
) -> Response:
    # orjson writes numpy arrays itself (FastAPI's ORJSONResponse is deprecated).
    return Response(
        content=orjson.dumps(content, option=_ORJSON_OPTIONS),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidInput(f"request body is not valid JSON: {err}") from err


def _infer_request(document: Any, *, model_name: str) -> InferRequest:
    """kserve's `InferRequest` from a decoded V2 body, without pydantic when well formed.

    A body that is not a plain inference request (no `inputs`, a tensor without a
    name, ...) goes through kserve's pydantic model, which answers 422 as kserve does.
    """
    if not _well_formed(document):
        validated = _validated(document)
        return InferRequest.from_inference_request(validated, model_name)
    inputs = [
        InferInput(
            name=tensor["name"],
            shape=tensor["shape"],
            datatype=tensor["datatype"],
            data=tensor["data"],
            parameters=tensor.get("parameters") or {},
        )
        for tensor in document["inputs"]
    ]
    outputs = [
        RequestedOutput(name=output["name"], parameters=output.get("parameters"))
        for output in document.get("outputs") or []
    ]
    return InferRequest(
        model_name=model_name,
        infer_inputs=inputs,
        request_id=document.get("id"),
        parameters=document.get("parameters"),
        request_outputs=outputs or None,
    )


def _binary_infer_request(
    body: bytes, *, json_length: str, model_name: str
) -> InferRequest:
    """A V2 request with binary tensor data: a JSON header, then raw tensor bytes.

    Numeric tensors become numpy views of the body (kserve's own decoder turns every
    value into a Python number); BYTES tensors use kserve's length-prefixed decoding.
    """
    if not json_length.isdigit() or int(json_length) > len(body):
        raise InvalidInput(
            f"{INFERENCE_CONTENT_LENGTH_HEADER} is {json_length!r} for a body of "
            f"{len(body)} bytes; send the length of the JSON part"
        )
    start = int(json_length)
    document = _loads(body[:start])
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        _validated(document)  # raises the 422 kserve would answer
    view = memoryview(body)
    for tensor in document["inputs"]:
        if not isinstance(tensor, dict) or "data" in tensor:
            continue
        size = (tensor.get("parameters") or {}).get("binary_data_size")
        if type(size) is not int or size < 0 or start + size > len(body):
            raise InvalidInput(
                f"input {tensor.get('name')!r} has binary_data_size {size!r}, but "
                f"{len(body) - start} bytes of tensor data are left"
            )
        raw = view[start : start + size]
        start += size
        if tensor.get("datatype") == "BYTES":
            tensor["data"] = deserialize_bytes_tensor(bytes(raw)).tolist()
            continue
        dtype = to_np_dtype(str(tensor.get("datatype")))
        if dtype is None:
            raise InvalidInput(
                f"input {tensor.get('name')!r} has unknown datatype "
                f"{tensor.get('datatype')!r}"
            )
        try:
            tensor["data"] = np.frombuffer(raw, dtype=dtype)
        except ValueError as err:
            raise InvalidInput(
                f"input {tensor.get('name')!r}: binary data cannot be read: {err}"
            ) from err
    return _infer_request(document, model_name=model_name)


def _well_formed(document: Any) -> bool:
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        return False
    if not isinstance(document.get("id", ""), str | None):
        return False
    for key in ("parameters",):
        if not isinstance(document.get(key) or {}, dict):
            return False
    tensors = [*document["inputs"], *(document.get("outputs") or [])]
    if not all(isinstance(tensor, dict) for tensor in tensors):
        return False
    if not all(isinstance(tensor.get("name"), str) for tensor in tensors):
        return False
    return all(
        isinstance(tensor.get("datatype"), str)
        and isinstance(tensor.get("shape"), list)
        and all(type(size) is int for size in tensor["shape"])
        and isinstance(tensor.get("data"), list | np.ndarray)
        and isinstance(tensor.get("parameters") or {}, dict)
        for tensor in document["inputs"]
    )


def _validated(document: Any) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate(document)
    except ValidationError as err:
        raise RequestValidationError(err.errors()) from err


def _response_body(response: InferResponse, *, requested: InferRequest) -> dict:
    """The V2 JSON answer; orjson writes numpy arrays and lists alike."""
    outputs = response.outputs
    wanted = [output.name for output in requested.request_outputs or []]
    if wanted:
        by_name = {output.name: output for output in outputs}
        unknown = [name for name in wanted if name not in by_name]
        if unknown:
            raise InvalidInput(
                f"requested output {unknown[0]!r} does not exist; outputs are "
                f"{sorted(by_name)}"
            )
        outputs = [by_name[name] for name in wanted]
    body: dict[str, Any] = {
        "id": response.id,
        "model_name": response.model_name,
        "model_version": response.model_version,
        "outputs": [_output_body(output) for output in outputs],
    }
    if response.parameters:
        body["parameters"] = to_http_parameters(response.parameters)
    return body


def _output_body(output: Any) -> dict[str, Any]:
    entry = {
        "name": output.name,
        "shape": list(output.shape),
        "datatype": output.datatype,
        "data": output.data,
    }
    if output.parameters:
        entry["parameters"] = to_http_parameters(output.parameters)
    return entry


class BodyLimitMiddleware:
    """ASGI middleware: answer 413 to a body over `max_body_bytes`, without reading it.

    A declared `Content-Length` is checked up front; a chunked body is counted while it
    streams in.
    """

    def __init__(self, app: Any, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit():
            if int(declared) > self.max_body_bytes:
                await self._refuse(scope, send, size=int(declared))
                return
        received = 0

        async def counting_receive() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise RequestTooLargeError(self._message(received))
            return message

        try:
            await self.app(scope, counting_receive, send)
        except RequestTooLargeError:
            await self._refuse(scope, send, size=received)

    def _message(self, size: int) -> str:
        return (
            f"request body of {size} bytes or more is over the {self.max_body_bytes} "
            "byte limit; send fewer rows per request"
        )

    async def _refuse(self, scope: dict, send: Any, *, size: int) -> None:
        error = RequestTooLargeError(self._message(size))
        logger.warning(
            "%d %s %s: %s",
            int(http_status(error)),
            scope.get("method", "-"),
            scope.get("path", "-"),
            error,
        )
        body = orjson.dumps({"error": str(error)})
        await send(
            {
                "type": "http.response.start",
                "status": int(http_status(error)),
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class PlumbRESTServerMultiProcess(RESTServerMultiProcess):
    """kserve's worker supervisor, with a start-up grace before the liveness ping.

    The attributes used (`_processes`, `_process`, `_parent_conn`) are kserve 0.21's.
    """

    startup_timeout_seconds: float = DEFAULT_STARTUP_TIMEOUT_SECONDS

    async def keep_subprocess_alive(self, sockets: list[socket]) -> None:
        """Respawn dead or hung workers; a worker still starting is only waited for."""
        if self.should_exit.is_set():
            return
        if not hasattr(self, "_started_at"):
            self._started_at: dict[int | None, float] = {}
            self._serving: set[int | None] = set()
        for index, process in enumerate(self._processes):
            if process.pid in self._serving:
                if not process.is_alive():  # kserve's 5 s ping
                    await self._replace(index, process, sockets)
            elif not process._process.is_alive():
                await self._replace(index, process, sockets)
            elif self._answered_first_ping(process):
                self._serving.add(process.pid)
            elif time.monotonic() - self._started_at[process.pid] > (
                self.startup_timeout_seconds
            ):
                logger.warning(
                    "Worker process %s did not start in %.0f s; replacing it",
                    process.pid,
                    self.startup_timeout_seconds,
                )
                await self._replace(index, process, sockets)

    def _answered_first_ping(self, process: RESTServerProcess) -> bool:
        # One ping is sent when the worker is first seen; it answers once its app is
        # about to serve (kserve starts the answering thread right before uvicorn).
        if process.pid not in self._started_at:
            self._started_at[process.pid] = time.monotonic()
            process._parent_conn.send(b"ping")
            return False
        if not process._parent_conn.poll(0):
            return False
        process._parent_conn.recv()
        logger.info(
            "Worker process %s is serving (started in %.1f s)",
            process.pid,
            time.monotonic() - self._started_at[process.pid],
        )
        return True

    async def _replace(
        self, index: int, process: RESTServerProcess, sockets: list[socket]
    ) -> None:
        process.kill()
        await process.wait_for_termination()
        if self.should_exit.is_set():
            return
        logger.warning(
            "Worker process %s stopped answering; starting a new one", process.pid
        )
        replacement = RESTServerProcess(
            sockets, self._rest_server.run, log_config_file=self.log_config_file
        )
        replacement.start()
        self._processes[index] = replacement
