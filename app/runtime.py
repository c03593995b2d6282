"""The composition root: builds the model, store, index, memory and chain once, and hands them out.

Nothing heavy happens at import time; `build_runtime(settings)` does the work. Tests pass their
own LLM bundle (a fake) and may skip the index.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from app.settings import Settings
from chains.assemble import ContextAssembler
from chains.memory import ShortTermMemory
from chains.model import ModelBundle, build_model
from chains.reply import ReplyResult, build_reply_chain, run_reply
from chains.retrieve import LoreRetrieval, llama_index_search
from chains.summary import build_summarizer
from chains.types import ChatMessage
from indexes.build import ensure_index, open_index
from indexes.filters import Filters
from indexes.live import LiveIngestion
from indexes.records import StoredMessage
from indexes.store import MessageStore
from indexes.vector import IndexUnavailable, LoreIndex, RetrievalWeights, WeightedRetriever
from prompts import Persona, PromptSet, load_persona, load_prompts

logger = logging.getLogger(__name__)


def open_lore_index(settings: Settings, store: MessageStore, build_if_missing: bool = True) -> LoreIndex | None:
    """The lore index (embedded Chroma or a Chroma server), built from the sample on first run; None if unusable."""
    try:
        index = open_index(settings, store)
        if build_if_missing:
            ensure_index(store, index, settings.SAMPLE_EXPORT)
        index.open()
        return index
    except Exception as exc:  # the bot still answers, without lore
        logger.warning("lore index unavailable, replies will have no lore: %s", exc)
        return None


@dataclass
class Runtime:
    """Everything a channel front-end (console or Discord) needs to answer messages."""

    settings: Settings
    persona: Persona
    prompts: PromptSet
    model: ModelBundle
    store: MessageStore
    lore_index: LoreIndex | None
    memory: ShortTermMemory
    chain: object
    model_factory: Callable[[Settings], ModelBundle] = field(default=build_model, repr=False)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.ingestion = LiveIngestion(
            self.store, self.lore_index, Filters.from_settings(self.settings, self.store.opted_out()), self.settings.LORE_KEYWORDS
        )

    def ingest(self, message: StoredMessage) -> str | None:
        """Live ingestion of one channel message (store + incremental index); see indexes.live."""
        return self.ingestion(message)

    def observe(self, channel_id: int, message: ChatMessage) -> None:
        """Every channel message goes to short-term memory."""
        self.memory.add(channel_id, message)

    def reply(self, channel_id: int, message: ChatMessage) -> ReplyResult:
        """Answer a message in character; the reply is remembered too. One reply at a time."""
        with self._lock:
            result = run_reply(self.chain, channel_id, message)
        self.memory.add(channel_id, ChatMessage(author=self.persona.name, content=result.text, from_character=True))
        return result

    def reload_prompts(self) -> None:
        """Re-read the persona and prompt files and rebuild the chain (the model stays loaded)."""
        persona = load_persona(self.settings.PERSONA_FILE)
        prompts = load_prompts(self.settings.PROMPTS_DIR)
        with self._lock:
            self._swap(self.settings, persona, prompts, self.model)
        logger.info("prompts reloaded from %s and %s", self.settings.PROMPTS_DIR, self.settings.PERSONA_FILE)

    def _swap(self, settings: Settings, persona: Persona, prompts: PromptSet, model: ModelBundle) -> None:
        """Put new parts in place and rebuild the chain and summarizer over them (caller holds the lock)."""
        self.settings, self.persona, self.prompts, self.model = settings, persona, prompts, model
        self.chain = compose_chain(settings, persona, prompts, model, self.lore_index, self.memory)
        self.memory.summarizer = build_summarizer(model.llm, model.tokenizer, prompts, persona, model.lock)

    def reload(self, settings: Settings) -> ModelBundle:
        """Re-read settings, prompts and persona and load the model and adapter again, then swap.

        The new model loads while the old one keeps answering; the swap waits for the reply in
        progress. Memory, store and index stay as they are. Returns the new model bundle.
        """
        persona = load_persona(settings.PERSONA_FILE)
        prompts = load_prompts(settings.PROMPTS_DIR)
        model = self.model_factory(settings)
        with self._lock, self.model.lock:
            self._swap(settings, persona, prompts, model)
        logger.info("reloaded: %s; prompts from %s, persona %s", model.describe(), settings.PROMPTS_DIR, settings.PERSONA_FILE)
        return model

    def close(self) -> None:
        self.memory.close()
        self.store.close()


def compose_chain(settings: Settings, persona: Persona, prompts: PromptSet, model: ModelBundle, lore_index: LoreIndex | None, memory: ShortTermMemory):
    """The reply chain from its parts."""
    search = None
    if lore_index is not None and settings.RAG_TOP_K > 0:
        try:
            weights = RetrievalWeights(
                settings.W_SIM, settings.W_REC, settings.W_ENG, settings.LORE_BOOST,
                settings.RECENCY_HALF_LIFE_DAYS, settings.MIN_SIMILARITY,
            )  # fmt: skip
            lore_index.current()
            retriever = WeightedRetriever(lore_index, weights, settings.RAG_TOP_K, settings.RAG_CANDIDATES)
            search = llama_index_search(retriever)
        except IndexUnavailable as exc:
            logger.warning("replying without lore: %s", exc)
    retrieval = LoreRetrieval(search, persona.lorebook, persona.lorebook_scan_depth)
    assembler = ContextAssembler(model.tokenizer, prompts, persona, settings.CONTEXT_TOKENS)
    counter = lambda text: len(model.tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    return build_reply_chain(
        model.llm, retrieval, assembler, memory, persona,
        reply_max_chars=settings.REPLY_MAX_CHARS, timeout_s=settings.GENERATION_TIMEOUT_SECONDS,
        token_counter=counter, model_lock=model.lock,
    )  # fmt: skip


def build_runtime(settings: Settings, model: ModelBundle | None = None, with_index: bool = True,
                  model_factory: Callable[[Settings], ModelBundle] = build_model) -> Runtime:  # fmt: skip
    """Build everything once from settings. Prompt errors and bad settings raise here, at start-up.

    `model_factory` loads the model (again on reload); tests pass one that makes a scripted fake.
    """
    persona = load_persona(settings.PERSONA_FILE)
    prompts = load_prompts(settings.PROMPTS_DIR)
    if settings.SEED is not None:
        from transformers import set_seed

        set_seed(settings.SEED)
    model = model or model_factory(settings)
    store = MessageStore(settings.store_path)
    lore_index = open_lore_index(settings, store) if with_index else None
    summarizer = build_summarizer(model.llm, model.tokenizer, prompts, persona, model.lock)
    memory = ShortTermMemory(settings.SHORT_TERM_WINDOW, settings.SUMMARIZE_INTERVAL, summarizer)
    chain = compose_chain(settings, persona, prompts, model, lore_index, memory)
    return Runtime(settings, persona, prompts, model, store, lore_index, memory, chain, model_factory)
