"""Facts about the machine a benchmark ran on: CPU, cores, memory bandwidth, peak memory."""

from __future__ import annotations

import os
import platform
import resource
import time

import numpy as np


def memory_bandwidth_gbs(megabytes: int = 512, repeats: int = 5) -> float:
    """Best-of-N copy bandwidth in GB/s (bytes read + written), a proxy for the decode ceiling."""
    src = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - started)
    return 2 * src.nbytes / best / 1e9


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0
