"""History benchmarks: import and index throughput, bounded-memory import, retrieval latency.

`import`: a generated 63,000-message JSON export imported into a fresh store, then indexed
(embeddings + Chroma), each phase in its own process so its peak memory is its own.
`bigjson`: a generated export of about 1 GB imported into the store (no index): peak memory
shows that the import streams. `retrieval`: top-k query latency through the weighted retriever at
10,000 and 100,000 indexed messages (vectors from a pool of real embeddings, with jitter).
"""

from __future__ import annotations

import json
import multiprocessing
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.machine import describe, peak_rss_mb, percentile

TARGET_IMPORT_SECONDS = 240
TARGET_RETRIEVAL_P95_MS = 30
TARGET_HYBRID_COST = 1.10  # hybrid retrieval's latency, at most this much the dense search's alone


def _settings(data_dir: Path):
    from config.settings import load_settings

    return load_settings(DATA_DIR=data_dir, DISCORD_CHANNEL_ID=None)


def _import_phase(export: str, data_dir: str) -> dict:
    from app.storage import import_options
    from config.logs import quiet_libraries
    from indexes.build import import_path
    from indexes.store import MessageStore

    quiet_libraries()
    settings = _settings(Path(data_dir))
    store = MessageStore(settings.store_path)
    started = time.perf_counter()
    report = import_path(import_options(settings), store, Path(export), progress=False)
    seconds = time.perf_counter() - started
    result = {
        "read": report.total("read"),
        "stored": store.count(),
        "lore": report.lore,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "skipped": dict(report.skipped),
    }
    store.close()
    return result


def _index_phase(data_dir: str) -> dict:
    from app.storage import index_place
    from config.logs import quiet_libraries
    from indexes.build import open_index
    from indexes.store import MessageStore

    quiet_libraries()
    settings = _settings(Path(data_dir))
    store = MessageStore(settings.store_path)
    index = open_index(index_place(settings), store)
    started = time.perf_counter()
    count = index.rebuild()
    seconds = time.perf_counter() - started
    store.close()
    return {
        "indexed": count,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "embed_dtype": str(index.embed_model._model.dtype),
    }


def _in_child(function, *args) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(function, args)


def run_import(messages: int = 63_000) -> dict:
    from bench.synthetic import write_export

    with tempfile.TemporaryDirectory() as folder:
        export = Path(folder) / "export.json"
        size = write_export(export, messages)
        imported = _in_child(_import_phase, str(export), folder + "/data")
        indexed = _in_child(_index_phase, folder + "/data")
    total = imported["seconds"] + indexed["seconds"]
    return {"messages": messages, "export_mb": size / 1e6, "import": imported, "index": indexed, "total_seconds": total}


def report_import(r: dict) -> str:
    i, x = r["import"], r["index"]
    verdict = "meets" if r["total_seconds"] < TARGET_IMPORT_SECONDS else "misses"
    return "\n".join(
        [
            f"# Import and index: {r['messages']:,} messages ({r['export_mb']:.0f} MB JSON)",
            f"machine      {describe()}",
            f"import       {i['seconds']:.1f} s, {i['read'] / i['seconds']:,.0f} messages/s read; "
            f"{i['stored']:,} stored, {i['lore']:,} lore; peak RSS {i['peak_rss_mb']:,.0f} MB",
            f"index        {x['seconds']:.1f} s, {x['indexed'] / x['seconds']:,.0f} messages/s embedded and stored; "
            f"{x['indexed']:,} indexed ({x['embed_dtype']}); peak RSS {x['peak_rss_mb']:,.0f} MB",
            f"total        {r['total_seconds']:.1f} s ({verdict} the target of {TARGET_IMPORT_SECONDS} s on 2 cores)",
        ]
    )


def run_bigjson(gigabytes: float = 1.0) -> dict:
    from bench.synthetic import write_export

    messages = int(gigabytes * 1e9 / 430)  # about 430 bytes per exported message
    with tempfile.TemporaryDirectory() as folder:
        export = Path(folder) / "big.json"
        started = time.perf_counter()
        size = write_export(export, messages)
        written = time.perf_counter() - started
        imported = _in_child(_import_phase, str(export), folder + "/data")
        store_mb = (Path(folder) / "data" / "messages.sqlite3").stat().st_size / 1e6
    return {
        "messages": messages,
        "export_mb": size / 1e6,
        "write_seconds": written,
        "import": imported,
        "store_mb": store_mb,
    }


def report_bigjson(r: dict) -> str:
    i = r["import"]
    return "\n".join(
        [
            f"# Streaming import: {r['export_mb']:,.0f} MB JSON export, {r['messages']:,} messages",
            f"machine      {describe()}",
            f"import       {i['seconds']:.1f} s, {i['read'] / i['seconds']:,.0f} messages/s; {i['stored']:,} stored "
            f"({r['store_mb']:,.0f} MB SQLite)",
            f"peak RSS     {i['peak_rss_mb']:,.0f} MB for a {r['export_mb']:,.0f} MB file "
            "(the file is never held in memory)",
        ]
    )


def run_retrieval(sizes: tuple[int, ...] = (10_000, 100_000), queries: int = 200, pool: int = 3000) -> dict:
    """Time the hybrid retriever and the dense search alone, question by question, at each index size.

    The messages repeat `pool` distinct texts (no more than the largest size holds), each vector jittered.
    """
    from datetime import datetime, timezone

    import numpy as np

    from bench.synthetic import _content
    from config.logs import quiet_libraries
    from indexes.records import StoredMessage
    from indexes.store import MessageStore
    from indexes.vector import LoreIndex, RetrievalWeights, WeightedRetriever, build_embedding, chroma_client

    quiet_libraries()
    rng = random.Random(1)
    embed = build_embedding()
    pool = max(1, min(pool, max(sizes)))
    queries = min(queries, pool)
    texts = [_content(rng, i) for i in range(pool)]
    vectors = np.array(embed.get_text_embedding_batch(texts), dtype=np.float32)
    questions = [f"who remembers when {t}" for t in texts[:queries]]
    results = {}
    for size in sizes:
        with tempfile.TemporaryDirectory() as folder:
            store = MessageStore(Path(folder) / "messages.sqlite3")
            index = LoreIndex(store, chroma_client(Path(folder) / "chroma"), embed)
            collection = index.client.create_collection(f"lore-{size}", metadata={"hnsw:space": "cosine"})
            store.set_meta("active_collection", collection.name)
            started = time.perf_counter()
            for start in range(0, size, 5000):
                ids = list(range(start, min(size, start + 5000)))
                base = vectors[[i % pool for i in ids]]
                jitter = np.random.default_rng(start).normal(0, 0.02, base.shape).astype(np.float32)
                batch = base + jitter
                batch /= np.linalg.norm(batch, axis=1, keepdims=True)
                now = time.time()
                store.upsert(
                    [
                        StoredMessage(
                            id=i,
                            channel_id=1,
                            author_id=i % 60,
                            author_name=f"member{i % 60}",
                            timestamp=datetime.fromtimestamp(now - (size - i) * 600, timezone.utc),
                            content=texts[i % pool],
                            reactions={"👍": i % 7} if i % 7 else {},  # as the index's metadata below counts them
                            lore_score=0.6 if i % 50 == 0 else 0.0,
                        )
                        for i in ids
                    ]
                )
                collection.add(  # as the index holds them: no words, which are read back from the store
                    ids=[str(i) for i in ids],
                    embeddings=batch.tolist(),
                    documents=[""] * len(ids),
                    metadatas=[
                        {
                            "message_id": str(i),
                            "author_id": str(i % 60),
                            "channel_id": "1",
                            "timestamp": now - (size - i) * 600,
                            "engagement": i % 7,
                            "private": False,
                            "lore_score": 0.6 if i % 50 == 0 else 0.0,
                            "is_lore": i % 50 == 0,
                        }
                        for i in ids
                    ],
                )
            build = time.perf_counter() - started
            retriever = WeightedRetriever(index, RetrievalWeights(), top_k=5, candidates=20)
            # The same search without the lexical one and the pairing of questions: what hybrid retrieval costs
            dense = WeightedRetriever(index, RetrievalWeights(w_lex=0.0, question_penalty=0.0), top_k=5, candidates=20)
            retriever.retrieve(questions[0])
            dense.retrieve(questions[0])
            latencies, dense_ms, embed_ms = [], [], []
            # Each question by both, in turn, first one then the other: the machine's noise and warm caches fall on both
            for number, question in enumerate(questions):
                t0 = time.perf_counter()
                embed.get_query_embedding(question)
                embed_ms.append((time.perf_counter() - t0) * 1000)
                for search, times in ((retriever, latencies), (dense, dense_ms))[:: 1 if number % 2 else -1]:
                    t0 = time.perf_counter()
                    search.retrieve(question)
                    times.append((time.perf_counter() - t0) * 1000)
            results[size] = {
                "p50_ms": percentile(latencies, 50),
                "p95_ms": percentile(latencies, 95),
                "dense_p50_ms": percentile(dense_ms, 50),
                "dense_p95_ms": percentile(dense_ms, 95),
                "embed_p50_ms": statistics.median(embed_ms),
                "build_seconds": build,
            }
            store.close()
    return {"queries": queries, "sizes": results, "peak_rss_mb": peak_rss_mb()}


def report_retrieval(r: dict) -> str:
    lines = [
        f"# Retrieval latency: top-5 of 20 candidates, re-ranked, {r['queries']} queries",
        f"machine      {describe()}",
    ]
    for size, s in r["sizes"].items():
        verdict = "meets" if s["p95_ms"] < TARGET_RETRIEVAL_P95_MS else "misses"
        lines.append(
            f"{int(size):>7,} msgs  P50 {s['p50_ms']:.1f} ms, P95 {s['p95_ms']:.1f} ms (query embedding alone P50 "
            f"{s['embed_p50_ms']:.1f} ms) - {verdict} the P95 target of {TARGET_RETRIEVAL_P95_MS} ms"
        )
        if "dense_p50_ms" in s:
            cost = s["p50_ms"] / s["dense_p50_ms"]
            lines.append(
                f"{'':>13}dense only, same run: P50 {s['dense_p50_ms']:.1f} ms, P95 {s['dense_p95_ms']:.1f} ms - "
                f"hybrid {cost:.2f}x at P50, {'within' if cost <= TARGET_HYBRID_COST else 'over'} the target of "
                f"{TARGET_HYBRID_COST:.2f}x"
            )
    lines.append(f"peak RSS     {r['peak_rss_mb']:,.0f} MB")
    return "\n".join(lines)


def save(out: Path, name: str, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"machine": describe(), **result}, indent=2, default=str))
