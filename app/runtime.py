"""The composition root: builds the model, the generation service, store, index, memory and chain once.

Nothing heavy happens at import time; `build_runtime(settings)` does the work. Tests pass their
own LLM bundle (a fake) and may skip the index.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace

from app.storage import import_filters, index_place
from chains.assemble import ContextAssembler
from chains.grounding import Grounding, embedder
from chains.links import LinkPolicy
from chains.memory import ShortTermMemory
from chains.names import KnownNames
from chains.reply import ReplyResult, astream_reply, build_reply_chain, run_reply, stream_reply, template_stops
from chains.retrieve import LoreRetrieval, llama_index_search
from chains.summary import build_summary_request
from chains.types import ChatMessage
from config.settings import Settings
from indexes.build import ensure_index, open_index
from indexes.disk import StorageError
from indexes.forget import ForgetReport, by_author, by_message, forget_member, member_ids, scrub_training
from indexes.live import LiveIngestion
from indexes.members import MemberData, expired, member_data, staleness
from indexes.records import StoredMessage
from indexes.store import MessageStore
from indexes.vector import IndexUnavailable, LoreIndex, RetrievalWeights, WeightedRetriever
from llm.generation import GenerationService
from llm.model import ADAPTER_META_FILE, ModelBundle, build_model, resolve_engine
from prompts import Persona, PromptSet, changed_prompts, load_persona, load_prompts, prompt_hashes

logger = logging.getLogger(__name__)
REPLY_DRAIN_SECONDS = 60.0  # on reload, how long the old model may finish the reply it is making
GONE_SECONDS, GONE_KEPT = 600.0, 5000  # how long (and how many) words just gone are held: see Runtime.gone_words


def torch_threads(settings: Settings) -> int:
    """Threads for torch (embeddings, and the transformers engine) in the serving process.

    With llama.cpp in the process, torch gets one thread: llama.cpp's own threads use the cores, and
    a second OpenMP pool beside them (even idle) was measured to slow decoding by about 30% on 2 cores.
    """
    options = settings.model_options()
    return 1 if resolve_engine(options) == "llamacpp" else options.thread_count


def default_model_factory(settings: Settings) -> ModelBundle:
    return build_model(settings.model_options())


def adapter_prompt_changes(settings: Settings) -> list[str]:
    """The prompt and persona files that differ from those ADAPTER_PATH was trained with (logged as a warning).

    An adapter learns the prompt layout it was trained on; served with other prompt files it sees
    text it never learned from. Adapters without recorded hashes (older, or GGUF files) are not checked.
    """
    meta = settings.ADAPTER_PATH / ADAPTER_META_FILE if settings.ADAPTER_PATH else None
    if meta is None or not meta.is_file():
        return []
    try:
        recorded = json.loads(meta.read_text(encoding="utf-8")).get("prompt_files")
    except (OSError, ValueError) as exc:
        logger.warning("cannot read %s: %s", meta, exc)
        return []
    if not isinstance(recorded, dict):
        return []
    changed = changed_prompts(recorded, prompt_hashes(settings.PROMPTS_DIR, settings.PERSONA_FILE))
    if changed:
        logger.warning(
            "ADAPTER_PATH=%s was trained with other prompt files than PROMPTS_DIR=%s and PERSONA_FILE=%s "
            "(changed: %s): its voice may suffer; train it again (python -m app train) to match",
            settings.ADAPTER_PATH,
            settings.PROMPTS_DIR,
            settings.PERSONA_FILE,
            ", ".join(changed),
        )
    return changed


def open_lore_index(settings: Settings, store: MessageStore, build_if_missing: bool = True) -> LoreIndex | None:
    """The lore index (embedded Chroma or a Chroma server), built from the sample on first run; None if unusable.

    Work left pending by a crash (messages stored but not indexed, deletions not applied) is done
    here, before the first reply.
    """
    try:
        index = open_index(index_place(settings), store)
        if build_if_missing:
            ensure_index(store, index, settings.SAMPLE_EXPORT)
        applied = index.sync()
        if applied:
            logger.info("index caught up with %d messages stored, changed or deleted while it was away", applied)
        index.open()
        return index
    except StorageError:  # the store itself cannot be written either: say so and stop
        raise
    except Exception as exc:  # the bot still answers, without lore
        logger.warning("lore index unavailable, replies will have no lore: %s", exc)
        return None


@dataclass(frozen=True)
class Parts:
    """What a start and a reload load from settings: the persona, the prompt files, the model and its service."""

    settings: Settings
    persona: Persona
    prompts: PromptSet
    model: ModelBundle
    service: GenerationService


def load_parts(
    settings: Settings,
    model_factory: Callable[[Settings], ModelBundle] = default_model_factory,
    model: ModelBundle | None = None,
    service: GenerationService | None = None,
) -> Parts:
    """The one loader of start-up and reloads: persona and prompt files (checked against the adapter's),
    then the model (`model`, else from `model_factory`) and its generation service (`service`, else a new
    one). Prompt errors and bad settings raise here, before anything is swapped.
    """
    persona = load_persona(settings.PERSONA_FILE)
    prompts = load_prompts(settings.PROMPTS_DIR)
    adapter_prompt_changes(settings)
    model = model or model_factory(settings)
    service = service or GenerationService(model.llm, timeout_s=settings.GENERATION_TIMEOUT_SECONDS)
    return Parts(settings, persona, prompts, model, service)


def apply_threads_and_seed(settings: Settings) -> None:
    """Torch's thread count and, with SEED, every random generator: process-wide, so applied only by a start
    (before the model loads) or a reload that succeeded (after)."""
    import torch

    torch.set_num_threads(torch_threads(settings))
    if settings.SEED is not None:
        from transformers import set_seed

        set_seed(settings.SEED)


@dataclass
class Runtime:
    """Everything a channel front-end (console or Discord) needs to answer messages."""

    settings: Settings
    persona: Persona
    prompts: PromptSet
    model: ModelBundle
    service: GenerationService
    store: MessageStore
    lore_index: LoreIndex | None
    memory: ShortTermMemory
    model_factory: Callable[[Settings], ModelBundle] = field(default=default_model_factory, repr=False)
    chain: object = field(init=False, repr=False)  # composed from the parts above (`_swap`)

    def __post_init__(self) -> None:
        self._swap_lock = threading.Lock()
        # Words just deleted, edited away or forgotten: id -> (old words, new words of an edit or None), held
        # in this process for GONE_SECONDS only, to take them out of replies still being made (`gone_words`).
        self._gone: collections.OrderedDict[int, tuple[str, str | None, float]] = collections.OrderedDict()
        self._gone_lock = threading.Lock()
        self.known_names = KnownNames(self.store.author_names())  # a reply never speaks as any of them
        self.opted_out: set[int] = self.store.opted_out()
        self._roles_seen: dict[int, bool] = {}  # CONSENT_ROLE_ID on each member's last message
        self.ingestion = LiveIngestion(
            self.store,
            self.lore_index,
            import_filters(self.settings, self.store.opted_out()),
            self.settings.LORE_KEYWORDS,
            wait_for_replies=lambda timeout: self.service.wait_for_replies(timeout),
        )
        self._swap(Parts(self.settings, self.persona, self.prompts, self.model, self.service))

    def ingest(self, message: StoredMessage, seen: bool = False) -> str | None:
        """Live ingestion of one channel message: stored now, indexed in the background (see indexes.live).

        `seen`: just read from Discord (a new message, not an edit): where a restart catches up from.
        """
        self.known_names.add(message.author_name, message.author_display)
        return self.ingestion(message, seen=seen)

    def edited(self, message: StoredMessage, shown: str, old: str | None = None) -> str | None:
        """A member edited a message: the new words replace the old in the store (or the message goes,
        if it no longer qualifies), in memory (`shown`: the text as members see it; the character's replies
        made from the old words go), and training files drop samples that held the old words; the index
        follows. `old`: the words before, when the store does not have them. An edit that changes no word
        (a pin, a late link preview) changes nothing. Returns why it was left out, or None.
        """
        before = self.store.get([message.id]).get(message.id)
        old = before.content if before is not None else old
        if old is not None and old in (message.content, message.content[: self.ingestion.filters.max_chars]):
            return None  # no word changed
        reason = self.ingestion.edit(message)
        with self._gone_lock:
            if old is not None:
                self._bury({message.id: (old, message.content)})
            self.memory.edit(message.id, shown)
        if before is not None:
            self.store.scrub()  # the old words leave the store's write-ahead log too
            scrub_training(self.settings.DATA_DIR, by_message({message.id}, [before.content]))
        return reason

    def remembered_edit(self, message_id: int, shown: str, new: str, old: str | None) -> None:
        """A message the store does not keep (a private thread, by default) edited: memory only, as `edited`."""
        if old is not None and old == new:
            return
        with self._gone_lock:
            if old is not None:
                self._bury({message_id: (old, new)})
            self.memory.edit(message_id, shown)

    def delete(self, ids: Iterable[int], words: dict[int, str] | None = None) -> int:
        """Messages deleted on Discord: gone at once from the store (so from retrieval), short-term memory
        (with the character's replies made from them), its summaries and the training files; the index drops
        their entries and re-embeds the replies that carried their words. `words`: what they said, where the
        store does not have it (Discord's cache). Returns how many were stored.
        """
        ids = set(ids)
        stored = {i: m.content for i, m in self.store.get(ids).items()}
        said = {**(words or {}), **self.memory.said(ids), **stored}
        deleted = self.store.delete(ids)
        with self._gone_lock:
            self._bury({i: (text, None) for i, text in said.items()})
            self.memory.drop(ids)
        scrub_training(self.settings.DATA_DIR, by_message(ids, stored.values()))
        if deleted:
            self.ingestion.wake()
        return len(deleted)

    def _bury(self, words: dict[int, tuple[str, str | None]]) -> None:
        """Hold words just gone for GONE_SECONDS (the caller holds `_gone_lock`)."""
        now = time.monotonic()
        for message_id, (old, new) in words.items():
            self._gone.pop(message_id, None)
            self._gone[message_id] = (old, new, now)
        while self._gone and (len(self._gone) > GONE_KEPT or next(iter(self._gone.values()))[2] < now - GONE_SECONDS):
            self._gone.popitem(last=False)

    def gone_words(self, ids: Iterable[int]) -> tuple[dict[int, str], dict[int, str]]:
        """Among `ids`, the words deleted, edited away or forgotten in the last GONE_SECONDS: (old words by id,
        an edit's new words by id), for taking them out of the character's posts."""
        with self._gone_lock:
            self._bury({})
            found = {i: self._gone[i] for i in set(ids) & self._gone.keys()}
        return {i: old for i, (old, _, _) in found.items()}, {i: new for i, (_, new, _) in found.items() if new}

    def delete_channel(self, channel_id: int) -> int:
        """A thread or channel deleted on Discord: every message of it and of its threads goes, as `delete` does
        (Discord tells of the channel only; discord.py adds the threads it has cached, not archived ones)."""
        channels = [channel_id, *self.store.threads_under(channel_id)]
        ids = [m.id for c in channels for m in self.store.iter_messages(c)]
        for channel in channels:
            self.memory.clear(channel)
        deleted = self.delete(ids)
        for channel in channels:
            self.store.set_meta(f"thread:{channel}", None)
        return deleted

    def observe(self, channel_id: int, message: ChatMessage) -> None:
        """Every channel message goes to short-term memory, but for those of members who opted out.

        Checked and added under the lock `forget` opts a member out and clears memory under: a message that
        comes while a member opts out is either seen opted out or added before their words are cleared.
        """
        with self._gone_lock:
            if message.author_id and message.author_id in self.opted_out:
                return
            self.memory.add(channel_id, message)
        if not message.from_character:
            self.known_names.add(message.author)

    def remember_reply(self, channel_id: int, text: str, sources: Iterable[int] = ()) -> None:
        """The character's own reply joins the channel's short-term memory, with the ids of the messages it
        was made from: when one of them is deleted, edited or forgotten, the reply goes from memory too."""
        reply = ChatMessage(author=self.persona.name, content=text, from_character=True, sources=frozenset(sources))
        self.memory.add(channel_id, reply)

    def _remember(self, channel_id: int, result: ReplyResult, asked: ChatMessage, held: set[int]) -> ReplyResult:
        """A reply made: remembered with every message its prompt held (`held`: memory when it was asked, then
        the lore and the question), any of which the model may have quoted; returned with them (`sources`).
        A reply made from words deleted, edited or forgotten while it was being made is not remembered."""
        sources = held | self.memory.prompt_sources(channel_id) | {i for item in result.lore for i in item.held_ids}
        if asked.message_id:
            sources.add(asked.message_id)
        with self._gone_lock:
            self._bury({})
            if sources.isdisjoint(self._gone):
                self.remember_reply(channel_id, result.text, sources)
        return replace(result, sources=frozenset(sources))

    def opted_out_elsewhere(self) -> int:
        """Members another process opted out (`python -m app forget` beside a bot on a Chroma server, which takes
        no lock on DATA_DIR): their words leave short-term memory and summaries, with the character's replies made
        from them, and their new messages stay out of it. Run before each reply; returns how many members."""
        new = self.store.opted_out() - self.opted_out
        if not new:
            return 0
        cited = self.memory.cited()
        stored = self.store.get(cited).keys()
        # Lore of theirs the other process deleted from the store: whose it was cannot be read any more, so every
        # reply made from a message that is neither stored nor in memory goes (what a private thread's summary held
        # may go with it: losing memory is the safe side).
        self._opt_out(new, gone=lambda: cited - stored - self.memory.said(cited).keys())
        logger.info("%d members found opted out in the store: their words left short-term memory", len(new))
        return len(new)

    def reply(self, channel_id: int, message: ChatMessage) -> ReplyResult:
        """Answer a message in character (the final result only); the reply is remembered too."""
        self.opted_out_elsewhere()
        held = self.memory.prompt_sources(channel_id)  # what the prompt is made from, before any of it can go
        return self._remember(channel_id, run_reply(self.chain, channel_id, message), message, held)

    def stream(self, channel_id: int, message: ChatMessage) -> Iterator[ReplyResult]:
        """Answer a message, yielding the safe part of the reply as it grows, then the final result."""
        self.opted_out_elsewhere()
        held = self.memory.prompt_sources(channel_id)
        for result in stream_reply(self.chain, channel_id, message):
            yield result if result.partial else self._remember(channel_id, result, message, held)

    async def astream(self, channel_id: int, message: ChatMessage) -> AsyncIterator[ReplyResult]:
        """`stream` for an event loop: nothing blocks the loop."""
        await asyncio.to_thread(self.opted_out_elsewhere)
        held = self.memory.prompt_sources(channel_id)
        async for result in astream_reply(self.chain, channel_id, message):
            yield result if result.partial else self._remember(channel_id, result, message, held)

    def forget(self, user_id: int, names: Iterable[str] = (), cited: Iterable[int] = ()) -> ForgetReport:
        """A member opts out: store, index, training data, short-term memory and summaries (see indexes.forget).

        `names` (exports without ids) only from an admin. Their names stay known: a reply never speaks as them.
        `cited`: ids the character's posts were made from, whose words, if the member's, `gone_words` then gives.
        """
        ids, _ = member_ids(user_id, names)
        quoted = {
            i: m.content for i, m in self.store.get(self.memory.cited() | set(cited)).items() if m.author_id in ids
        }
        quoted |= self.memory.said_by(ids)  # kept in memory only (a private thread)
        report = forget_member(self.store, self.lore_index, self.settings.DATA_DIR, user_id, names)
        ids, _ = member_ids(user_id, report.names)
        self._opt_out(ids, set(report.names), quoted)
        return report

    def _opt_out(
        self, ids: set[int], names: set[str] = frozenset(), quoted: dict[int, str] | None = None, gone=lambda: set()
    ) -> None:
        """Members opted out: their words leave short-term memory and summaries, with the character's replies made
        from them (`quoted`: their words read before, by message id; `gone()`: more ids whose replies go, read under
        the lock), held for `gone_words`; their next messages stay out of memory (`observe` checks under this lock).
        """
        with self._gone_lock:
            self.opted_out |= ids
            quoted = {**(quoted or {}), **self.memory.said_by(ids)}  # what came while the store forgot them too
            self._bury({i: (text, None) for i, text in quoted.items()})
            self.memory.forget(ids, names)
            self.memory.drop(set(quoted) | gone())

    def set_consent(self, user_id: int, given: bool, source: str = "command") -> int:
        """A member consents to training, or withdraws (which drops the samples holding their words);
        returns how many samples were dropped."""
        self.store.set_consent(user_id, given, source)
        if given:
            return 0
        return sum(scrub_training(self.settings.DATA_DIR, by_author(user_id)).values())

    def consent_role(self, user_id: int, has_role: bool) -> None:
        """CONSENT_ROLE_ID seen on (or gone from) a member's message: their consent by role follows it.

        What a member said themselves (`!consent`, `!consent off`) is never overridden by a role.
        """
        if self._roles_seen.get(user_id) == has_role:
            return
        self._roles_seen[user_id] = has_role
        said = self.store.consent().get(user_id)
        if has_role and said is None:
            self.store.set_consent(user_id, True, "role")
        elif not has_role and said == (True, "role"):
            self.set_consent(user_id, False, "role")

    def member_data(self, user_id: int) -> MemberData:
        """What the character keeps about a member (`!mydata`), counted, never their words."""
        return member_data(self.store, self.lore_index, self.settings.DATA_DIR, self.settings.ADAPTERS_DIR, user_id)

    def prune(self) -> int:
        """RETENTION_DAYS: messages older than that are deleted everywhere; returns how many."""
        ids = expired(self.store, self.settings.RETENTION_DAYS)
        if ids:
            logger.info(
                "%d messages older than %d days deleted (RETENTION_DAYS)", len(ids), self.settings.RETENTION_DAYS
            )
        return self.delete(ids)

    def stale_adapter(self) -> str | None:
        """Why the adapter in use must be trained again (its data deleted, edited or withdrawn since), or None."""
        return staleness(self.store, self.settings.ADAPTER_PATH)

    def reload_prompts(self) -> None:
        """Re-read the persona and prompt files and rebuild the chain (the model stays loaded)."""
        with self._swap_lock:  # the model and service in place now, not ones a reload is replacing
            self._swap(load_parts(self.settings, model=self.model, service=self.service))
        logger.info("prompts reloaded from %s and %s", self.settings.PROMPTS_DIR, self.settings.PERSONA_FILE)

    def _swap(self, parts: Parts) -> None:
        """Put new parts in place and rebuild the chain and the summary prompt over them."""
        self.settings, self.persona, self.prompts = parts.settings, parts.persona, parts.prompts
        self.model, self.service = parts.model, parts.service
        self.memory.summary_request = build_summary_request(
            parts.model.tokenizer, parts.prompts, parts.persona, parts.settings.CONTEXT_TOKENS
        )
        self.memory.schedule = parts.service.background
        self.chain = compose_chain(
            parts.settings,
            parts.persona,
            parts.prompts,
            parts.model,
            parts.service,
            self.lore_index,
            self.memory,
            self.known_names,
        )

    def reload(self, settings: Settings) -> ModelBundle:
        """Take new settings: prompts, persona, the model and adapter (loaded again), and every other part.

        The new model loads while the old one keeps answering; replies already asked of the old one
        finish on it, then it is freed. Memory (resized to SHORT_TERM_WINDOW, summarized every
        SUMMARIZE_INTERVAL), live ingestion (filters, LORE_KEYWORDS), the index (INDEX_MIN_CHARS),
        retrieval weights, SEED and thread counts follow the new settings; the store, the index
        content and what memory holds stay. Settings in RESTART_SETTINGS are the caller's to keep.
        """
        parts = load_parts(settings, self.model_factory)
        model = parts.model
        apply_threads_and_seed(settings)
        with self._swap_lock:
            old_model, old_service = self.model, self.service
            self.memory.resize(settings.SHORT_TERM_WINDOW, settings.SUMMARIZE_INTERVAL)
            self.ingestion.filters = import_filters(settings, self.store.opted_out())
            self.ingestion.keywords = settings.LORE_KEYWORDS
            if self.lore_index is not None:
                self.lore_index.min_chars = index_place(settings).min_chars
            self._swap(parts)
        old_service.wait_for_replies(REPLY_DRAIN_SECONDS)
        old_service.close()
        if old_model is not model:
            old_model.close()
        logger.info(
            "reloaded: %s; prompts from %s, persona %s", model.describe(), settings.PROMPTS_DIR, settings.PERSONA_FILE
        )
        return model

    def close(self) -> None:
        self.ingestion.close()
        self.service.close()
        self.model.close()
        self.memory.close()
        self.store.close()


def lore_retriever(settings: Settings, lore_index: LoreIndex) -> WeightedRetriever:
    """The hybrid retriever with the configured weights (RAG_* and W_* settings)."""
    weights = RetrievalWeights(
        settings.W_SIM,
        settings.W_REC,
        settings.W_ENG,
        settings.LORE_BOOST,
        settings.RECENCY_HALF_LIFE_DAYS,
        settings.MIN_SIMILARITY,
        settings.W_LEX,
        settings.ENGAGEMENT_SCALE,
        settings.QUESTION_PENALTY,
    )
    return WeightedRetriever(lore_index, weights, settings.RAG_TOP_K, settings.RAG_CANDIDATES)


def lore_grounding(settings: Settings, lore_index: LoreIndex) -> Grounding:
    """The check of replies to questions against the lore (chains.grounding), with the index's embedding model and
    the store's common words (a name in more than lexical.COMMON_SHARE of the messages picks no evidence)."""
    return Grounding(
        embedder(lore_index.embed_model), settings.GROUNDING_MIN_SCORE, common=lore_index.store.common_words
    )


def compose_chain(
    settings: Settings,
    persona: Persona,
    prompts: PromptSet,
    model: ModelBundle,
    service: GenerationService,
    lore_index: LoreIndex | None,
    memory: ShortTermMemory,
    known_names: Iterable[str] = (),
):
    """The reply chain from its parts."""
    search = None
    if lore_index is not None and settings.RAG_TOP_K > 0:
        try:
            lore_index.current()
            search = llama_index_search(lore_retriever(settings, lore_index))
        except IndexUnavailable as exc:
            logger.warning("replying without lore: %s", exc)
    retrieval = LoreRetrieval(search, persona.lorebook, persona.lorebook_scan_depth)
    assembler = ContextAssembler(model.tokenizer, prompts, persona, settings.CONTEXT_TOKENS)
    counter = lambda text: len(model.tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    grounding = None
    if search is not None and settings.GROUNDING != "off":
        grounding = lore_grounding(settings, lore_index)
    return build_reply_chain(
        service,
        retrieval,
        assembler,
        memory,
        persona,
        reply_max_chars=settings.REPLY_MAX_CHARS,
        timeout_s=settings.GENERATION_TIMEOUT_SECONDS,
        stops=template_stops(model.tokenizer),
        token_counter=counter,
        max_new_tokens=settings.MAX_NEW_TOKENS,
        known_names=known_names,
        grounding=grounding,
        answer=prompts.answer,
        links=LinkPolicy.from_lists(settings.ALLOWED_LINK_DOMAINS, settings.ALLOWED_INVITES),
    )


def build_runtime(
    settings: Settings,
    model: ModelBundle | None = None,
    with_index: bool = True,
    model_factory: Callable[[Settings], ModelBundle] = default_model_factory,
) -> Runtime:
    """Build everything once from settings. Prompt errors and bad settings raise here, at start-up.

    `model_factory` loads the model (again on reload); tests pass one that makes a scripted fake.
    """
    apply_threads_and_seed(settings)
    parts = load_parts(settings, model_factory, model)
    store = MessageStore(settings.store_path)
    lore_index = open_lore_index(settings, store) if with_index else None
    memory = ShortTermMemory(settings.SHORT_TERM_WINDOW, settings.SUMMARIZE_INTERVAL)  # its prompt: Runtime._swap
    runtime = Runtime(
        settings, parts.persona, parts.prompts, parts.model, parts.service, store, lore_index, memory, model_factory
    )
    runtime.prune()
    return runtime
