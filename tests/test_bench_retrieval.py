"""`python -m bench retrieval` as a user runs it, small: its figures, and hybrid's cost against the dense search."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_bench_retrieval_times_hybrid_and_dense_side_by_side(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "bench", "retrieval", "--sizes", "200", "--queries", "6", "--out", str(tmp_path)],
        cwd=ROOT,
        env={**os.environ, "DATA_DIR": str(tmp_path / "data")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "200 msgs  P50" in result.stdout
    cost = re.search(
        r"dense only, same run: P50 [\d.]+ ms, P95 [\d.]+ ms - hybrid ([\d.]+)x at P50, (within|over)", result.stdout
    )
    assert cost, result.stdout
    figures = json.loads((tmp_path / "retrieval.json").read_text())
    assert figures["queries"] == 6
    size = figures["sizes"]["200"]
    assert 0 < size["dense_p50_ms"] <= size["dense_p95_ms"] and 0 < size["p50_ms"] <= size["p95_ms"]
    assert float(cost[1]) == pytest.approx(size["p50_ms"] / size["dense_p50_ms"], abs=0.01)
