"""Scoring replies: ragas metrics, checks of the answer against the reference, the persona's voice.

Offline, always:
- retrieval: context precision and recall of the retrieved lore against the reference contexts
  (ragas' string-similarity `NonLLMContextPrecisionWithReference`, `NonLLMContextRecall`), and
  `source_in_top_k`: whether a reference context is among the retrieved messages at all;
- the answer: `semantic_similarity` to the reference answer (local embeddings), `answer_correct`
  (every fact the sample lists appears in the reply), `grounded` (the share of the reply's checkable
  claims, numbers, code-like and proper names, found in the retrieved lore, the question or the names
  of who speaks: an invented figure or place counts against it);
- the character: `answered` (the reply is not the fallback line; 1 - fallback rate), `in_character`
  (the reply's embedding is nearer the persona's own example lines than a neutral assistant's, so it
  is not the chain's validator grading itself), `under_length_cap`.

With a judge (an OpenAI-compatible server, or a model the factory loads): ragas' response relevancy
and faithfulness.
"""

from __future__ import annotations

import asyncio
import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from chains.grounding import Grounding, claims, known_claims

logger = logging.getLogger(__name__)

RETRIEVAL = ("context_precision", "context_recall")
OFFLINE = (*RETRIEVAL, "source_in_top_k", "semantic_similarity", "answer_correct", "grounded")
JUDGED = ("response_relevancy", "faithfulness")
PERSONA = ("answered", "in_character", "under_length_cap")

# A neutral assistant's register, against which the persona's voice is told apart.
NEUTRAL_LINES = (
    "Certainly! Here is the information you requested. Let me know if you have any other questions.",
    "As an AI language model, I do not have personal opinions, but I can provide an overview.",
    "I would be happy to help you with that. Please provide more details so that I can assist you.",
    "Thank you for your question. Based on the available information, the answer is as follows.",
    "I apologize for any confusion. Could you please clarify what you mean?",
)

SHORT_CONTEXT_CHARS = 12  # a retrieved text shorter than this counts only when it is the reference whole


def _normal(text: str) -> str:
    return " ".join(text.lower().split())


def facts_found(reply: str, facts: Sequence[str]) -> float | None:
    """1.0 when every fact (`a|b`: any of the spellings) appears in the reply, else 0.0; None without facts."""
    if not facts:
        return None
    text = _normal(reply)
    return 1.0 if all(any(_normal(v) in text for v in fact.split("|") if v.strip()) for fact in facts) else 0.0


def source_found(retrieved: Sequence[str], references: Sequence[str]) -> float | None:
    """1.0 when a reference context is among the retrieved messages (whole, or shortened), else 0.0."""
    if not references:
        return None
    got = [_normal(r).rstrip("…") for r in retrieved]
    for reference in map(_normal, references):
        if any(g and (g == reference or reference in g or (_telling(g) and g in reference)) for g in got):
            return 1.0
    return 0.0


def _telling(text: str) -> bool:
    """Long enough to stand for the message it is part of (a shortened one's start, one of its parts): a short
    retrieved text ("867", "2") would be found in any reference that holds it, so it must be the reference."""
    return len(text) >= SHORT_CONTEXT_CHARS and any(c.isalpha() for c in text)


def grounded(reply: str, supports: Sequence[str], names: Sequence[str] = ()) -> float | None:
    """The share of the reply's checkable claims that the supports (lore, question) or names hold; None if none."""
    said = claims(reply)
    if not said:
        return None
    return 1 - len(Grounding.unsupported(said, known_claims(supports, names))) / len(said)


class VoiceCheck:
    """Is a reply in the persona's voice? Nearer its example lines than a neutral assistant's."""

    def __init__(self, embeddings, persona_lines: Sequence[str], neutral_lines: Sequence[str] = NEUTRAL_LINES):
        import numpy as np

        self._np = np
        self.embeddings = embeddings
        self.persona = self._centroid(persona_lines)
        self.neutral = self._centroid(neutral_lines)

    def _centroid(self, lines: Sequence[str]):
        vectors = self._np.asarray(self.embeddings.embed_documents(list(lines)), dtype=float)
        centre = vectors.mean(axis=0)
        return centre / (self._np.linalg.norm(centre) or 1.0)

    def score(self, reply: str) -> float | None:
        if not reply.strip():
            return None
        vector = self._np.asarray(self.embeddings.embed_query(reply), dtype=float)
        return 1.0 if float(vector @ self.persona) > float(vector @ self.neutral) else 0.0


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
        embeddings = embeddings or local_embeddings()
        self.embeddings = getattr(embeddings, "embeddings", embeddings)  # the LangChain embeddings inside ragas'
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall, SemanticSimilarity

            self.metrics = {
                "context_precision": NonLLMContextPrecisionWithReference(),
                "context_recall": NonLLMContextRecall(),
                "semantic_similarity": SemanticSimilarity(embeddings=embeddings),
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
            user_input=sample.question,
            response=sample.response,
            reference=sample.reference,
            retrieved_contexts=sample.retrieved_contexts,
            reference_contexts=sample.reference_contexts,
        )
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
