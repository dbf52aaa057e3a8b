"""`python -m bench`: every benchmark section, results as JSON and Markdown.

python -m bench [--quick] [--sections pipeline,drift] [--repeats N] [--output F]
python -m bench --render bench/results/2026-12-03-full.json [--markdown F]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from bench.harness import ROOT, SECTIONS, run_benchmarks
from bench.report import render_file
from components.common.logs import FORMAT, setup_logging

RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_MARKDOWN = ROOT / "docs" / "benchmarks.md"
# Full mode: the pipeline's cold run is the long one (minutes), so it repeats twice;
# the other sections take their own medians inside and run once.
FULL_REPEATS = {
    "pipeline": 2,
    "training": 1,
    "compression": 1,
    "serving": 1,
    "drift": 1,
}

logger = logging.getLogger("bench")


def _sections(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(SECTIONS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
        )
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="for development, rough figures: small sizes, short scenarios, one "
        "repeat (breast-cancer pipeline, the scripts' --quick)",
    )
    parser.add_argument(
        "--sections",
        type=_sections,
        default=list(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="repeats of every section"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="results JSON (default: bench/results/)",
    )
    parser.add_argument(
        "--render", type=Path, default=None, help="only render this results JSON"
    )
    parser.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help=f"write the Markdown here (default with --render: {DEFAULT_MARKDOWN})",
    )
    args = parser.parse_args(argv)
    setup_logging()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    if args.render is not None:
        if not args.render.is_file():
            parser.error(f"--render: no such file {str(args.render)!r}")
        sys.stdout.write(render_file(args.render, args.markdown or DEFAULT_MARKDOWN))
        return

    repeats = {
        name: args.repeats or (1 if args.quick else FULL_REPEATS[name])
        for name in SECTIONS
    }
    results = run_benchmarks(args.sections, quick=args.quick, repeats=repeats)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
    output = args.output or RESULTS_DIR / f"{stamp}-{results['mode']}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    sys.stdout.write(render_file(output, args.markdown))
    sys.stdout.write(f"\nresults: {output}\n")


if __name__ == "__main__":
    main()
