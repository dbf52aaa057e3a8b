"""Render a results JSON of `python -m bench` as Markdown (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common.artifacts import read_json

HOW_TO_RUN = """\
Reproduce with `python -m bench` (full mode, the figures below; 6 to 8 minutes on 2
idle cores, 14 on busy ones). `python -m bench --quick` is for development: every
section and every figure, from small sizes, short scenarios and warm-ups and one
repeat, in under 2 minutes on 2 idle cores (112 s measured). Its figures are rough and
so are its verdicts; the goals count in full mode. Quick mode runs the breast-cancer
pipeline on 1 worker, trains the compression and serving models in-process, probes the
training section's parallel ceiling once for 1 s, and gives each serving scenario 0.75 s
after 0.25 s of warm-up on servers shared by kind, model and batching, started
together. Each section runs its command in a child process, repeats it, and keeps every
value and the median; `--sections pipeline,drift` picks sections, `--repeats N`
overrides the repeats.
Results are written to `bench/results/<date>-<mode>.json`; `python -m bench --render
FILE` writes this page from one. Goals are the issue's; "x the goal" is median / goal.

"""

SECTION_ROWS = [
    (
        "pipeline",
        "`plumb run`, all 336,776 flights rows: cold (empty cache), then again",
        "goals <= 180 s cold, <= 20 s re-run",
    ),
    (
        "training",
        "`python -m bench.training`",
        "1 vs 2 torchrun workers; plumb loop vs a plain torch loop",
    ),
    (
        "compression",
        "`python -m bench.compression`",
        "every candidate vs the float32 ONNX model",
    ),
    (
        "serving",
        "`python -m bench.serving`; `plumb serve` peak RSS",
        "int8 predictor vs torch eager fp32 vs a no-op model, same server",
    ),
    (
        "drift",
        "`python -m bench.drift`",
        "plumb's drift check vs plain Evidently; events/s into the monitor",
    ),
]

QUICK_NOTE = (
    "Quick mode, for development: small sizes, short scenarios and warm-ups, one "
    "repeat. Its figures are rough, and so are the verdicts on them; the figures that "
    "count come from full mode."
)

SHARED_MACHINE_NOTE = (
    "Load average {load} at the start on {cores} cores: absolute times swing with "
    "whatever else the machine runs; the ratios were measured side by side in the "
    "same run."
)


def _format(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if unit in {"rows/s", "req/s", "events/s"} or magnitude >= 1000:
        text = f"{value:,.0f}"
    elif magnitude >= 100:
        text = f"{value:.0f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    else:
        text = f"{value:.4f}"
    return f"{text} {unit}".strip()


def _goal(figure: dict[str, Any]) -> str:
    goal = figure.get("goal")
    if not goal:
        return ""
    verdict = "met" if figure["goal_met"] else "**not met**"
    ratio = ""
    if figure["median"] is not None and goal["target"]:
        ratio = f" ({figure['median'] / goal['target']:.2f}x the goal)"
    return f"{goal['op']} {_format(goal['target'], figure['unit'])}: {verdict}{ratio}"


def render_markdown(results: dict[str, Any], *, source: str | None = None) -> str:
    """One table per section: median, every value, goal and verdict; then the runs."""
    info = results["machine"]
    load = ", ".join(f"{x:.1f}" for x in info.get("load_average_at_start", []))
    lines = [
        "# plumb benchmarks",
        "",
        HOW_TO_RUN.strip(),
        "",
        "| section | command | comparison |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in SECTION_ROWS),
        "",
        f"## Results ({results['mode']} mode)",
        "",
        f"- date: {results['date']}; commit {results.get('git_commit') or '?'}",
        f"- machine: {info['cores']} cores, {info['cpu_model']}, "
        f"{info.get('memory_gib')} GiB, {info['platform']}, Python {info['python']}",
        f"- command: `{results['command']}` ({results['seconds']:.0f} s in all)",
        f"- {SHARED_MACHINE_NOTE.format(load=load or '?', cores=info['cores'])}",
    ]
    if results["mode"] == "quick":
        lines.append(f"- {QUICK_NOTE}")
    if source:
        lines.append(f"- results file: `{source}`")
    lines.append(
        "- peak RSS: `wait4` `ru_maxrss` of each benchmark command, i.e. the "
        "largest process in its tree; `plumb serve`: the server's own VmHWM."
    )
    for name, section in results["sections"].items():
        lines += [
            "",
            f"### {name}",
            "",
            f"{section['repeats']} repeat(s), {section['seconds']:.0f} s. "
            "Median over the repeats; every value in brackets.",
            "",
            "| figure | median | values | compared with | goal |",
            "|---|---|---|---|---|",
        ]
        for figure in section["figures"]:
            values = ", ".join(_format(v, "") for v in figure["values"])
            lines.append(
                f"| {figure['name']} | {_format(figure['median'], figure['unit'])} "
                f"| [{values}] | {figure.get('comparison') or ''} | {_goal(figure)} |"
            )
        commands = sorted({run["command"] for run in section["runs"]})
        lines += ["", *(f"- `{command}`" for command in commands)]
        lines += [f"- {note}" for note in section["notes"]]
        failed = [run for run in section["runs"] if run["returncode"] != 0]
        if failed:
            lines.append(
                f"- {len(failed)} run(s) failed; see the JSON for their output"
            )
    return "\n".join(lines) + "\n"


def render_file(results_path: Path, output: Path | None = None) -> str:
    """Render `results_path`; also write the Markdown to `output` when given."""
    source = results_path.resolve()
    root = Path(__file__).resolve().parent.parent
    shown = source.relative_to(root) if source.is_relative_to(root) else source
    text = render_markdown(read_json(results_path), source=str(shown))
    if output is not None:
        output.write_text(text, encoding="utf-8")
    return text
