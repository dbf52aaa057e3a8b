"""`python -m components.serving MODEL_DIR ...`: run plumb's predictor."""

from __future__ import annotations

import argparse
import sys

from components.common.errors import PlumbError
from components.common.logs import setup_logging
from components.serving.server import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ROWS,
    ServeOptions,
    serve,
)


def _parse(argv: list[str]) -> ServeOptions:
    parser = argparse.ArgumentParser(
        prog="python -m components.serving", description="Serve a plumb model."
    )
    parser.add_argument("model_dir", help="Model directory (/mnt/models on a cluster).")
    parser.add_argument("--model-name", default="plumb-model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    grpc = parser.add_mutually_exclusive_group()
    grpc.add_argument("--grpc-port", type=int, default=None)
    grpc.add_argument("--no-grpc", action="store_true")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--max-rows", type=int, default=DEFAULT_MAX_ROWS)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--batching", action=argparse.BooleanOptionalAction, default=True
    )
    parser.add_argument("--batch-window-ms", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--latency-log", action="store_true")
    args = parser.parse_args(argv)
    return ServeOptions(
        model_dir=args.model_dir,
        model_name=args.model_name,
        host=args.host,
        port=args.port,
        grpc_port=None if args.no_grpc else args.grpc_port,
        workers=args.workers,
        max_rows=args.max_rows,
        max_body_bytes=args.max_body_bytes,
        batching=args.batching,
        batch_window_ms=args.batch_window_ms,
        threads=args.threads,
        latency_log=args.latency_log,
    )


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, configure logging once, build and start the server."""
    setup_logging()
    try:
        options = _parse(sys.argv[1:] if argv is None else argv)
        serve(options)
    except PlumbError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
