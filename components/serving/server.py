"""Start kserve's ModelServer for a plumb model, bound to the host plumb is told.

kserve 0.21's `ModelServer` hard-codes `host="0.0.0.0"` in the uvicorn config it builds
inside `start()` and offers no option to change it (upstream `RESTServer` does the same
on master). `BoundModelServer` sets uvicorn's own `Config.host` on that config after
kserve has built it and before anything is bound; uvicorn reads `host` only when it
binds, in this process or, with several workers, in the parent that hands the socket
to each worker. gRPC is off unless a port is given; kserve binds it on all interfaces.

A request body over `max_body_bytes` is refused with 413 before it is read into
memory, by `BodyLimitMiddleware` (`rest.py`, installed in every worker process); a
batch of more than `max_rows` rows is refused with 413 once it is parsed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kserve import ModelServer

from components.common.errors import PlumbError
from components.common.net import bind_error
from components.serving.model import DEFAULT_MAX_ROWS, PlumbModel
from components.serving.rest import (
    PlumbRESTServer,
    PlumbRESTServerMultiProcess,
    set_latency_logging,
)

logger = logging.getLogger(__name__)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


# Every request of a batch waits out the window; a second already costs more than
# batching can save.
MAX_BATCH_WINDOW_MS = 1000.0


@dataclass
class ServeOptions:
    """What `plumb serve` and `python -m components.serving` were asked for."""

    model_dir: Path
    model_name: str = "plumb-model"
    host: str = "127.0.0.1"
    port: int = 8080
    grpc_port: int | None = None
    workers: int = 1
    max_rows: int = DEFAULT_MAX_ROWS
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    batching: bool = True
    batch_window_ms: float = 0.0
    threads: int = 1
    latency_log: bool = False

    def __post_init__(self) -> None:
        self.model_dir = Path(self.model_dir)
        if not self.model_dir.is_dir():
            raise PlumbError(
                f"model directory {str(self.model_dir)!r} does not exist; pass the "
                "folder written by plumb's train or compress step"
            )
        for name in ("port", "workers", "max_rows", "max_body_bytes", "threads"):
            if getattr(self, name) < 1:
                raise PlumbError(f"--{name.replace('_', '-')} must be >= 1")
        for name in ("port", "grpc_port"):
            port = getattr(self, name)
            if port is not None and not 1 <= port <= 65535:
                raise PlumbError(
                    f"--{name.replace('_', '-')} {port} is not a TCP port; use 1-65535"
                )
        if self.grpc_port is not None and self.grpc_port == self.port:
            raise PlumbError(
                f"--grpc-port {self.grpc_port} equals --port; choose another port"
            )
        if not 0 <= self.batch_window_ms <= MAX_BATCH_WINDOW_MS:  # NaN fails too
            raise PlumbError(
                f"--batch-window-ms must be between 0 and {MAX_BATCH_WINDOW_MS:g} ms, "
                f"got {self.batch_window_ms:g}; 0 batches only requests already waiting"
            )
        if not self.batching and self.batch_window_ms > 0:
            raise PlumbError(
                f"--batch-window-ms {self.batch_window_ms:g} needs batching; drop "
                "--no-batching or the window"
            )


class BoundModelServer(ModelServer):
    """kserve's ModelServer listening on `host` instead of every interface."""

    def __init__(self, *, host: str, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.host = host
        self.max_body_bytes = max_body_bytes

    def setup_event_loop(self) -> None:
        # ModelServer.start() has built its REST server(s) but bound nothing yet when it
        # calls this hook; the attribute names are kserve 0.21's. The objects become
        # plumb's subclasses here (they add no state of their own), so the 4xx logging,
        # the V2 JSON path and the worker start-up grace apply in every process.
        supervisor = self._rest_multiprocess_server
        if supervisor is not None:
            supervisor.__class__ = PlumbRESTServerMultiProcess
        rest_servers = [self._rest_server, getattr(supervisor, "_rest_server", None)]
        for rest_server in rest_servers:
            if rest_server is not None:
                rest_server.__class__ = PlumbRESTServer
                rest_server.config.host = self.host
                rest_server.latency_logging = self.enable_latency_logging
                rest_server.max_body_bytes = self.max_body_bytes
        set_latency_logging(self.enable_latency_logging)
        logger.info("Model server listening on http://%s:%d", self.host, self.http_port)
        super().setup_event_loop()


def build(options: ServeOptions) -> tuple[BoundModelServer, PlumbModel]:
    """Load the model and build the server; nothing is bound until `start`."""
    model = PlumbModel(
        options.model_name,
        options.model_dir,
        max_rows=options.max_rows,
        batching=options.batching,
        batch_window_ms=options.batch_window_ms,
        threads=options.threads,
    )
    model.load()
    server = BoundModelServer(
        host=options.host,
        max_body_bytes=options.max_body_bytes,
        http_port=options.port,
        grpc_port=options.grpc_port or 8081,
        enable_grpc=options.grpc_port is not None,
        workers=options.workers,
        enable_latency_logging=options.latency_log,
    )
    return server, model


def serve(options: ServeOptions) -> None:
    """Load the model and serve it until the process is stopped.

    Raises:
        PlumbError: The address cannot be bound (in use, or not this machine's).
    """
    check_bindable(options.host, options.port)
    server, model = build(options)
    server.start([model])


def check_bindable(host: str, port: int) -> None:
    """Fail early, with the fix, when `host:port` cannot be bound.

    Raises:
        PlumbError: The port is in use or the address is not this machine's.
    """
    error = bind_error(host, port)
    if error is not None:
        raise PlumbError(
            f"cannot listen on {host}:{port} ({error.strerror}); pick a free --port "
            "or an address of this machine for --host"
        ) from error
