"""`python -m evals retrieval`: the retriever alone over eval sets, in seconds instead of minutes.

For each question it runs the configured hybrid retriever (the one replies use: app.runtime.lore_retriever)
on the set's own store and index, and reports how often a reference context is among the top RAG_TOP_K
(`source_in_top_k`, as `python -m evals run` scores it) and at which rank. No model is loaded and nothing
is saved: it is for comparing retrieval settings (W_*, RAG_*) quickly, side by side, on dev sets.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from evals.dataset import EvalSet
from evals.metrics import source_found


@dataclass(frozen=True)
class RetrievalResult:
    sample_id: str
    rank: int | None  # 1-based rank of the first retrieved message holding a reference context; None: not found


def retrieval_eval(settings, eval_set: EvalSet, character: str) -> list[RetrievalResult]:
    """Rank of the reference context for every question of a set that has reference contexts."""
    from app.runtime import lore_retriever, open_lore_index
    from chains.preprocess import analyze
    from chains.retrieve import llama_index_search
    from evals.runner import settings_for
    from indexes.store import MessageStore

    settings = settings_for(settings, eval_set)
    with contextlib.closing(MessageStore(settings.store_path)) as store:
        index = open_lore_index(settings, store)
        if index is None:
            raise ValueError(f"eval set {eval_set.name}: its lore index cannot be opened")
        search = llama_index_search(lore_retriever(settings, index))
        results = []
        for sample in eval_set.samples:
            if not sample.reference_contexts:
                continue
            found = [item.content for item in search(analyze(sample.question, character).query)]
            rank = next((n for n, text in enumerate(found, 1) if source_found([text], sample.reference_contexts)), None)
            results.append(RetrievalResult(sample.id, rank))
        return results


def summary(name: str, results: list[RetrievalResult]) -> str:
    """One line per set: source in top k, mean reciprocal rank, and the questions it missed."""
    if not results:
        return f"{name}: no question with reference contexts"
    found = sum(r.rank is not None for r in results) / len(results)
    mrr = sum(1 / r.rank for r in results if r.rank) / len(results)
    missed = ", ".join(r.sample_id for r in results if r.rank is None) or "none"
    return f"{name}: source_in_top_k {found:.3f}  mrr {mrr:.3f}  ({len(results)} questions; missed: {missed})"
