"""Render a results JSON of `python -m bench` as Markdown (docs/benchmarks.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common.artifacts import read_json

SHARED_MACHINE_NOTE = (
    "The machine was shared with other engineers' builds and tests while this ran "
    "(load average {load} at the start on {cores} cores), so absolute times are "
    "pessimistic; the ratios were measured side by side in the same run."
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
    return f"{goal['op']} {_format(goal['target'], figure['unit'])}: {verdict}"


def render_markdown(results: dict[str, Any], *, source: str | None = None) -> str:
    """One table per section: median, every value, goal and verdict; then the runs."""
    info = results["machine"]
    load = ", ".join(f"{x:.1f}" for x in info.get("load_average_at_start", []))
    lines = [
        f"# plumb benchmarks ({results['mode']} mode)",
        "",
        f"- date: {results['date']}; commit {results.get('git_commit') or '?'}",
        f"- machine: {info['cores']} cores, {info['cpu_model']}, "
        f"{info.get('memory_gib')} GiB, {info['platform']}, Python {info['python']}",
        f"- command: `{results['command']}` ({results['seconds']:.0f} s in all)",
        f"- {SHARED_MACHINE_NOTE.format(load=load or '?', cores=info['cores'])}",
    ]
    if source:
        lines.append(f"- results file: `{source}`")
    lines.append(
        "- peak RSS: `wait4` `ru_maxrss` of each benchmark command, i.e. the "
        "largest process in its tree; `plumb serve`: the server's own VmHWM."
    )
    for name, section in results["sections"].items():
        lines += [
            "",
            f"## {name}",
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
    text = render_markdown(read_json(results_path), source=str(results_path))
    if output is not None:
        output.write_text(text, encoding="utf-8")
    return text
