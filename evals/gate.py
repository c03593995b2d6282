"""`python -m evals gate`: exit non-zero when a metric of the latest run falls below its threshold."""

from __future__ import annotations

from pathlib import Path

import yaml

from evals.dataset import DatasetError

THRESHOLDS = Path("evals/thresholds.yaml")


def load_thresholds(path: Path) -> dict[str, dict[str, float]]:
    """{eval set name: {metric: minimum}} from the thresholds file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return {name: {k: float(v) for k, v in (metrics or {}).items()} for name, metrics in data.items()}
    except (OSError, ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read the thresholds ({{set: {{metric: number}}}}): {exc}") from None


def check(run: dict, thresholds: dict[str, dict[str, float]]) -> tuple[bool, list[str]]:
    """(passed, lines): each threshold of the run's eval set against the run's mean."""
    wanted = thresholds.get(run["dataset"])
    if not wanted:
        return False, [f"no thresholds for eval set {run['dataset']!r} in the thresholds file"]
    passed, lines = True, []
    for metric, minimum in wanted.items():
        value = run["means"].get(metric)
        ok = value is not None and value >= minimum
        passed &= ok
        shown = "missing" if value is None else f"{value:.3f}"
        lines.append(f"{'PASS' if ok else 'FAIL'}  {metric:<22} {shown:>8}  (threshold {minimum:.3f})")
    return passed, lines
