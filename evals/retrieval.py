"""`python -m evals retrieval`: the retriever alone over eval sets, in seconds instead of minutes.

For each question it runs the configured hybrid retriever (the one replies use: app.runtime.lore_retriever)
on the set's own store and index, and reports how often a reference context is among the top RAG_TOP_K
(`source_in_top_k`, as `python -m evals run` scores it) and at which rank; and how often the evidence
the grounding check picks from what was found (the passage the answer line quotes) holds the question's
facts (`fact_in_evidence`): the most a small model's grounded reply can get right. No language model is
loaded and nothing is saved: it is for comparing retrieval and evidence settings (W_*, RAG_*,
GROUNDING_*) quickly, side by side, on dev sets.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from evals.dataset import DatasetError, EvalSet
from evals.metrics import facts_found, source_found


@dataclass(frozen=True)
class RetrievalResult:
    sample_id: str
    rank: int | None  # 1-based rank of the first retrieved message holding a reference context; None: not found
    fact_in_evidence: float | None = None  # 1.0: the evidence passage holds every fact; None: the sample has none
    evidence: str = ""  # the passages the answer line would quote, one a line ("" when no evidence was close enough)


def retrieval_eval(settings, eval_set: EvalSet, character: str) -> list[RetrievalResult]:
    """Rank of the reference context for every question of a set that has reference contexts."""
    from app.runtime import lore_grounding, lore_retriever, open_lore_index
    from chains.preprocess import analyze
    from chains.retrieve import llama_index_search
    from evals.runner import settings_for
    from indexes.store import MessageStore

    settings = settings_for(settings, eval_set)
    with contextlib.closing(MessageStore(settings.store_path)) as store:
        index = open_lore_index(settings, store)
        if index is None:
            raise DatasetError(f"eval set {eval_set.name}: its lore index cannot be opened")
        search = llama_index_search(lore_retriever(settings, index))
        grounding = lore_grounding(settings, index)
        results = []
        for sample in eval_set.samples:
            if not sample.reference_contexts:
                continue
            analysis = analyze(sample.question, character)
            items = search(analysis.query)
            found = [item.content for item in items]
            rank = next((n for n, text in enumerate(found, 1) if source_found([text], sample.reference_contexts)), None)
            evidence = grounding.evidence(analysis.query, analysis.intent, items)
            passage = "\n".join(quoted.passage for quoted in evidence.quoted) if evidence else ""
            results.append(RetrievalResult(sample.id, rank, facts_found(passage, sample.facts), passage))
        return results


def summary(name: str, results: list[RetrievalResult]) -> str:
    """One line per set: source in top k, mean reciprocal rank, and the questions it missed."""
    if not results:
        return f"{name}: no question with reference contexts"
    found = sum(r.rank is not None for r in results) / len(results)
    mrr = sum(1 / r.rank for r in results if r.rank) / len(results)
    missed = ", ".join(r.sample_id for r in results if r.rank is None) or "none"
    with_facts = [r for r in results if r.fact_in_evidence is not None]
    in_evidence = (
        f"  fact_in_evidence {sum(r.fact_in_evidence for r in with_facts) / len(with_facts):.3f}" if with_facts else ""
    )
    return (
        f"{name}: source_in_top_k {found:.3f}  mrr {mrr:.3f}{in_evidence}  ({len(results)} questions; missed: {missed})"
    )


def details(results: list[RetrievalResult]) -> str:
    """One line per question: the rank of its source, whether the evidence holds its facts, the evidence."""
    lines = []
    for r in results:
        held = {None: "-", 1.0: "yes", 0.0: "no"}[r.fact_in_evidence]
        evidence = r.evidence.replace("\n", " || ")[:200] or "(none)"  # " || " between two messages' passages
        lines.append(f"  {r.sample_id}: rank {r.rank or '-'}  facts {held}  evidence: {evidence}")
    return "\n".join(lines)
