"""Scoring replies with ragas: offline metrics always, LLM-judged ones when a judge is configured.

Offline: context precision and recall of the retrieved lore against the reference contexts
(string similarity, `NonLLMContextPrecisionWithReference`, `NonLLMContextRecall`), and semantic
similarity of the reply to the reference answer (local embeddings). With a judge model:
response relevancy and faithfulness. Persona consistency comes from the chain's own validation:
in character, and under the length cap.
"""

from __future__ import annotations

import asyncio
import logging
import math
import warnings
from dataclasses import dataclass

logger = logging.getLogger(__name__)

RETRIEVAL = ("context_precision", "context_recall")
OFFLINE = (*RETRIEVAL, "semantic_similarity")
JUDGED = ("response_relevancy", "faithfulness")
PERSONA = ("in_character", "under_length_cap")


@dataclass
class Scored:
    """What one sample was scored on: the inputs ragas needs."""

    question: str
    response: str
    reference: str
    retrieved_contexts: list[str]
    reference_contexts: list[str]


def local_embeddings():
    """The packaged MiniLM as ragas embeddings (offline)."""
    from langchain_huggingface import HuggingFaceEmbeddings

    from indexes.vector import packaged_embedding_path

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from ragas.embeddings import LangchainEmbeddingsWrapper

        return LangchainEmbeddingsWrapper(HuggingFaceEmbeddings(model_name=str(packaged_embedding_path())))


class Scorer:
    """Builds the ragas metrics once and scores samples with them."""

    def __init__(self, embeddings=None, judge_llm=None) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall, SemanticSimilarity

            self.metrics = {
                "context_precision": NonLLMContextPrecisionWithReference(),
                "context_recall": NonLLMContextRecall(),
                "semantic_similarity": SemanticSimilarity(embeddings=embeddings or local_embeddings()),
            }
            if judge_llm is not None:
                from ragas.llms import LangchainLLMWrapper
                from ragas.metrics import Faithfulness, ResponseRelevancy

                wrapped = LangchainLLMWrapper(judge_llm)
                self.metrics["response_relevancy"] = ResponseRelevancy(
                    llm=wrapped, embeddings=self.metrics["semantic_similarity"].embeddings
                )
                self.metrics["faithfulness"] = Faithfulness(llm=wrapped)

    async def _score(self, sample: Scored) -> dict[str, float | None]:
        from ragas import SingleTurnSample

        ragas_sample = SingleTurnSample(
            user_input=sample.question, response=sample.response, reference=sample.reference,
            retrieved_contexts=sample.retrieved_contexts, reference_contexts=sample.reference_contexts,
        )  # fmt: skip
        scores: dict[str, float | None] = {}
        for name, metric in self.metrics.items():
            if name in RETRIEVAL and not sample.reference_contexts:
                scores[name] = None  # nothing to find: retrieval is not scored on this sample
                continue
            if name in RETRIEVAL and not sample.retrieved_contexts:
                scores[name] = 0.0
                continue
            if name == "faithfulness" and not sample.retrieved_contexts:
                scores[name] = None
                continue
            try:
                value = float(await metric.single_turn_ascore(ragas_sample))
                scores[name] = None if math.isnan(value) else value
            except Exception as exc:  # a judge that returns unparsable output, for one
                logger.warning("metric %s failed on %r: %s", name, sample.question[:60], exc)
                scores[name] = None
        return scores

    def score(self, sample: Scored) -> dict[str, float | None]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return asyncio.run(self._score(sample))


def mean(values) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
