"""Run the drift monitor: `python -m components.monitoring --model-dir ... --state-dir ...`."""

from __future__ import annotations

import argparse

from components.common.config import load_config
from components.common.logs import setup_logging
from components.monitoring.service import serve


def main() -> None:
    parser = argparse.ArgumentParser(description="plumb's drift monitor")
    parser.add_argument("--model-dir", required=True, help="plumb model directory")
    parser.add_argument("--state-dir", required=True, help="where state and reports go")
    parser.add_argument("--config", default=None, help="plumb YAML config")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()

    setup_logging()
    config = load_config(args.config).monitoring
    serve(
        model_dir=args.model_dir,
        state_dir=args.state_dir,
        config=config,
        host=args.host,
        port=args.port,
    )


if __name__ == "__main__":
    main()
