"""The run report: a markdown page with a bar chart (SVG), compared with the previous run."""

from __future__ import annotations

from pathlib import Path

from evals.gate import load_thresholds

RELEVANCE_TARGET = 0.85
BAR_COLOURS = ("#9aa5b1", "#3d7dd8")


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def chart_svg(means: dict, previous: dict | None, width: int = 640) -> str:
    """Grouped horizontal bars per metric: previous run (grey) and this run (blue), 0 to 1."""
    metrics = list(means)
    row, left, scale = 34, 170, width - 200
    height = 40 + row * len(metrics)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, metric in enumerate(metrics):
        y = 20 + i * row
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">{metric}</text>')
        for j, value in enumerate(((previous or {}).get(metric), means[metric])):
            if value is None:
                continue
            bar_y = y + j * 12
            parts.append(
                f'<rect x="{left}" y="{bar_y}" width="{max(1, value * scale):.1f}" height="10" '
                f'fill="{BAR_COLOURS[j]}"/>'
            )
            parts.append(f'<text x="{left + value * scale + 4:.1f}" y="{bar_y + 9}" font-size="10">{value:.2f}</text>')
    target_x = left + RELEVANCE_TARGET * scale
    parts.append(
        f'<line x1="{target_x:.1f}" y1="10" x2="{target_x:.1f}" y2="{height - 10}" '
        'stroke="#d83d3d" stroke-dasharray="4 3"/>'
    )
    parts.append(
        f'<text x="{target_x + 3:.1f}" y="{height - 4}" font-size="10" fill="#d83d3d">target {RELEVANCE_TARGET}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def write_report(run, previous: dict | None, thresholds_file: Path) -> Path:
    thresholds = load_thresholds(thresholds_file).get(run.dataset, {})
    previous_means = previous["means"] if previous else None
    (run.path / "chart.svg").write_text(chart_svg(run.means, previous_means), encoding="utf-8")
    relevance = run.means.get("response_relevancy") or run.means.get("semantic_similarity")
    lines = [
        f"# Eval run {run.id}",
        "",
        f"- eval set: `{run.dataset}`, {len(run.samples)} questions; prompts: `{run.prompts_dir}`; model: {run.model}",
        f"- compared with: `{previous['id']}` (prompts `{previous['prompts_dir']}`)"
        if previous
        else "- compared with: no earlier run on this set",
        "",
        "![scores](chart.svg)",
        "",
        "| metric | this run | previous | change | threshold |",
        "| --- | --- | --- | --- | --- |",
    ]
    for metric, value in run.means.items():
        before = (previous_means or {}).get(metric)
        change = "-" if value is None or before is None else f"{value - before:+.3f}"
        lines.append(f"| {metric} | {_fmt(value)} | {_fmt(before)} | {change} | {_fmt(thresholds.get(metric))} |")
    if relevance is not None:
        which = (
            "response_relevancy"
            if run.means.get("response_relevancy") is not None
            else "semantic_similarity (offline proxy)"
        )
        gap = RELEVANCE_TARGET - relevance
        lines += [
            "",
            f"Relevance ({which}): {relevance:.3f} against the design's target of {RELEVANCE_TARGET}: "
            + (f"a gap of {gap:.3f}." if gap > 0 else "target met."),
        ]
    lines += [
        "",
        "## Per question",
        "",
        "| id | intent | reply | " + " | ".join(run.means) + " |",
        "| --- | --- | --- | " + " | ".join("---" for _ in run.means) + " |",
    ]
    for r in run.samples:
        reply = r.reply.replace("|", "/").replace("\n", " ")[:90]
        lines.append(
            f"| {r.id} | {r.intent} | {reply} | " + " | ".join(_fmt(r.scores.get(m)) for m in run.means) + " |"
        )
    path = run.path / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
