"""bench retrieval: a small run through the real retriever, and what its report says against the targets."""

from bench.history import TARGET_HYBRID_COST, report_retrieval, run_retrieval


def test_the_retrieval_benchmark_times_hybrid_and_the_dense_search_alone():
    result = run_retrieval((300,), queries=6, pool=60)
    timed = result["sizes"][300]
    assert timed["p50_ms"] > 0 and timed["dense_p50_ms"] > 0 and timed["dense_p95_ms"] >= timed["dense_p50_ms"]
    report = report_retrieval(result)
    assert "    300 msgs  P50" in report and "dense only, same run: P50" in report


def test_the_report_says_where_hybrid_retrieval_stands_against_the_dense_search():
    def sized(hybrid: float, dense: float) -> dict:
        timed = {"p50_ms": hybrid, "p95_ms": hybrid * 1.5, "embed_p50_ms": 10.0}
        dense_timed = {"dense_p50_ms": dense, "dense_p95_ms": dense * 1.5}
        return {"queries": 200, "sizes": {100_000: {**timed, **dense_timed}}, "peak_rss_mb": 1400.0}

    assert "hybrid 1.64x at P50, over the target of 1.10x" in report_retrieval(sized(35.5, 21.65))
    assert f"hybrid 1.05x at P50, within the target of {TARGET_HYBRID_COST:.2f}x" in report_retrieval(sized(21.0, 20.0))
    timed = {"p50_ms": 23.2, "p95_ms": 34.5, "embed_p50_ms": 12.0}
    earlier = {"queries": 200, "sizes": {10_000: timed}, "peak_rss_mb": 1400.0}
    assert "dense only" not in report_retrieval(earlier)  # a result saved before the dense search was timed
