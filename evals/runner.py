"""`python -m evals run`: the real chain over an eval set, scored with ragas, saved as a run.

A run directory `evals/runs/<run-id>/` holds `run.json` (settings, prompt file hashes, model,
means per metric), `samples.jsonl` (each question, reply, retrieved contexts and scores) and
`report.md` with `chart.svg`, compared with the previous run on the same eval set.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from evals.dataset import DatasetError, EvalSet
from evals.metrics import (
    JUDGED,
    OFFLINE,
    PERSONA,
    Scored,
    Scorer,
    VoiceCheck,
    facts_found,
    grounded,
    mean,
    source_found,
)
from prompts import prompt_hashes

logger = logging.getLogger(__name__)

RUNS_DIR = Path("evals/runs")
EVAL_DATA_DIR = Path("data/evals")  # the store and index of each eval set that brings its own channel
EVAL_CHANNEL_ID = 1100000000000000099
SAFE_SETTINGS = (
    "ENGINE",
    "MODEL_NAME",
    "ADAPTER_PATH",
    "ENABLE_QUANTIZATION",
    "TORCH_DTYPE",
    "TEMPERATURE",
    "TOP_P",
    "REPETITION_PENALTY",
    "MAX_NEW_TOKENS",
    "SEED",
    "CONTEXT_TOKENS",
    "REPLY_MAX_CHARS",
    "RAG_TOP_K",
    "RAG_CANDIDATES",
    "W_SIM",
    "W_LEX",
    "W_REC",
    "W_ENG",
    "LORE_BOOST",
    "ENGAGEMENT_SCALE",
    "QUESTION_PENALTY",
    "RECENCY_HALF_LIFE_DAYS",
    "MIN_SIMILARITY",
    "PROMPTS_DIR",
    "PERSONA_FILE",
)


@dataclass
class SampleResult:
    id: str
    intent: str
    asker: str
    question: str
    reference: str
    reply: str
    retrieved_contexts: list[str]
    reference_contexts: list[str]
    scores: dict[str, float | None]
    seconds: float
    problems: list[str] = field(default_factory=list)


@dataclass
class Run:
    id: str
    path: Path
    dataset: str
    prompts_dir: str
    model: str
    means: dict[str, float | None]
    samples: list[SampleResult]


def messages_of(item, store) -> list[str]:
    """The words of each stored message a lore item holds, one context each as the metrics count them: the message
    found, then the ones its answer goes on in (`LoreItem.more_ids`: the retriever shows them within it)."""
    said = store.get(item.more_ids) if item.more_ids else {}
    more = [said[i].content for i in item.more_ids if i in said]
    tail = "".join(f"\n{text}" for text in more)
    if not more or len(more) != len(item.more_ids) or not item.content.endswith(tail):
        return [item.content]
    return [item.content[: -len(tail)], *more]


def settings_for(settings, eval_set: EvalSet):
    """The settings an eval set runs with: its own channel's store, index and character, if it has them."""
    if eval_set.source is None:
        return settings
    folder = EVAL_DATA_DIR / eval_set.name
    update = {
        "DATA_DIR": folder / eval_set.source.name,
        "SAMPLE_EXPORT": unpacked(eval_set.source, folder),
        "DISCORD_CHANNEL_ID": None,
        "CHROMA_HOST": None,
        **({"PERSONA_FILE": eval_set.persona} if eval_set.persona else {}),
    }
    return settings.model_copy(update=update)


def unpacked(source: Path, folder: Path) -> Path:
    """The export itself; a gzipped one (`name.txt.gz`, as shipped in evals/exports/) unpacked once into `folder`."""
    if source.suffix != ".gz":
        return source
    target = folder / source.stem
    if not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
        folder.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part")
        with gzip.open(source, "rb") as packed, partial.open("wb") as out:
            shutil.copyfileobj(packed, out)
        partial.replace(target)
    return target


def voice_lines(persona) -> list[str]:
    """The persona's own lines: its example replies and its greeting."""
    lines = [persona.render(reply, "member") for _, reply in persona.examples]
    return [line for line in [*lines, persona.render(persona.greeting, "member")] if line.strip()]


def run_eval(
    settings,
    eval_set: EvalSet,
    runtime=None,
    scorer: Scorer | None = None,
    runs_dir: Path = RUNS_DIR,
    limit: int | None = None,
    progress=print,
) -> Run:
    """Answer every question with the real chain, score the answers, save the run."""
    from app.runtime import build_runtime
    from chains.types import ChatMessage

    settings = settings_for(settings, eval_set)
    if runtime is None:  # built here: closed here
        with contextlib.closing(build_runtime(settings)) as built:
            return run_eval(settings, eval_set, built, scorer, runs_dir, limit, progress)
    scorer = scorer or Scorer(judge_llm=_judge(settings))
    voice = VoiceCheck(scorer.embeddings, voice_lines(runtime.persona))
    samples = eval_set.samples[:limit] if limit else eval_set.samples
    results = []
    for number, sample in enumerate(samples, start=1):
        runtime.memory.clear(EVAL_CHANNEL_ID)
        started = time.perf_counter()
        message = ChatMessage(author=sample.asker, content=sample.question, author_id=number, message_id=number)
        runtime.observe(EVAL_CHANNEL_ID, message)
        result = runtime.reply(EVAL_CHANNEL_ID, message)
        seconds = time.perf_counter() - started
        found = [item for item in result.lore if item.source == "index"]
        retrieved = [text for item in found for text in messages_of(item, runtime.store)]
        scores = scorer.score(
            Scored(sample.question, result.text, sample.reference, retrieved, list(sample.reference_contexts))
        )
        scores["source_in_top_k"] = source_found(retrieved, sample.reference_contexts)
        scores["answer_correct"] = (
            facts_found(result.text, sample.facts) if result.ok else (0.0 if sample.facts else None)
        )
        names = [sample.asker, runtime.persona.name, *(item.author for item in result.lore)]
        supports = [*retrieved, sample.question, runtime.persona.description]
        scores["grounded"] = grounded(result.text, supports, names) if result.ok else None
        scores["answered"] = 1.0 if result.ok else 0.0
        scores["in_character"] = voice.score(result.text)
        scores["under_length_cap"] = 1.0 if len(result.text) <= settings.REPLY_MAX_CHARS else 0.0
        problems = [p for verdict in result.attempts for p in verdict.problems]
        results.append(
            SampleResult(
                sample.id,
                sample.intent,
                sample.asker,
                sample.question,
                sample.reference,
                result.text,
                retrieved,
                list(sample.reference_contexts),
                scores,
                seconds,
                problems,
            )
        )
        progress(f"[{number}/{len(samples)}] {sample.id}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in scores.items()))
    metrics = [m for m in (*OFFLINE, *JUDGED, *PERSONA) if any(m in r.scores for r in results)]
    means = {m: mean(r.scores.get(m) for r in results) for m in metrics}
    run_id, path = _new_run_dir(runs_dir, eval_set.name)
    run = Run(run_id, path, eval_set.name, str(settings.PROMPTS_DIR), runtime.model.describe(), means, results)
    record = {
        "id": run_id,
        "dataset": eval_set.name,
        "dataset_file": str(eval_set.path),
        "samples": len(results),
        "prompts_dir": str(settings.PROMPTS_DIR),
        "model": run.model,
        "means": means,
        "settings": {k: str(getattr(settings, k)) for k in SAFE_SETTINGS},
        "prompt_files": prompt_hashes(settings.PROMPTS_DIR, settings.PERSONA_FILE),
        "judge": getattr(settings, "EVAL_JUDGE_MODEL", None),
        "source": str(eval_set.source or ""),
    }
    (path / "run.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    with open(path / "samples.jsonl", "w", encoding="utf-8") as out:
        for r in results:
            out.write(json.dumps(r.__dict__, ensure_ascii=False) + "\n")
    return run


def _new_run_dir(runs_dir: Path, name: str) -> tuple[str, Path]:
    """A fresh run directory; ids sort by time (to the millisecond)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    while True:
        now = time.time()
        run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}-{name}"
        try:
            (runs_dir / run_id).mkdir()
            return run_id, runs_dir / run_id
        except FileExistsError:
            time.sleep(0.002)


def _judge(settings):
    """The judge as a LangChain model, when EVAL_JUDGE_MODEL names one.

    With EVAL_JUDGE_BASE_URL, the model an OpenAI-compatible server serves under that name, through
    its chat endpoint (the server applies the judge's own chat template); else a model the factory loads.
    """
    name = getattr(settings, "EVAL_JUDGE_MODEL", None)
    if not name:
        return None
    if getattr(settings, "EVAL_JUDGE_BASE_URL", None):
        return openai_judge(settings.EVAL_JUDGE_BASE_URL, name, settings.EVAL_JUDGE_API_KEY)
    from llm.model import build_model

    judge_settings = settings.model_copy(
        update={"MODEL_NAME": name, "ADAPTER_PATH": None, "MAX_NEW_TOKENS": 512, "CONTEXT_TOKENS": 4096}
    )
    return build_model(judge_settings.model_options()).llm


def openai_judge(base_url: str, model: str, api_key=None, timeout_s: float = 120.0):
    """A judge on any OpenAI-compatible server (vLLM, llama.cpp's server, TGI, OpenAI itself)."""
    from langchain_openai import ChatOpenAI

    key = api_key.get_secret_value() if hasattr(api_key, "get_secret_value") else (api_key or "not-needed")
    return ChatOpenAI(
        base_url=base_url, model=model, api_key=key, temperature=0.0, max_tokens=512, timeout=timeout_s, max_retries=1
    )


def _fmt(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def load_run(path: Path) -> dict:
    try:
        record = json.loads((path / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # a run killed while saving: say which, and that it can go
        raise DatasetError(f"{path / 'run.json'}: cannot read the run ({exc}); delete {path} to drop it") from None
    record["path"] = path
    return record


def previous_run(
    runs_dir: Path, current: str, dataset: str, prompts_dir: str | None = None, samples: int | None = None
) -> dict | None:
    """The latest earlier run on the same eval set and questions (with the given prompts, if any)."""
    if not runs_dir.is_dir():
        return None
    for path in sorted((p for p in runs_dir.iterdir() if (p / "run.json").is_file()), reverse=True):
        if path.name >= current:
            continue
        try:
            record = load_run(path)
        except DatasetError as exc:  # an earlier run left broken: compared with the one before it
            logger.warning("%s", exc)
            continue
        same_questions = samples is None or record.get("samples") == samples
        if (
            record["dataset"] == dataset
            and same_questions
            and (prompts_dir is None or record["prompts_dir"] == prompts_dir)
        ):
            return record
    return None


def table(run: Run) -> str:
    """Per-sample and per-metric table for the terminal."""
    metrics = list(run.means)
    short = {
        m: m.replace("context_", "ctx_")
        .replace("semantic_similarity", "similarity")
        .replace("under_length_cap", "len_ok")[:11]
        for m in metrics
    }
    header = f"{'sample':<22} {'intent':<9} " + " ".join(f"{short[m]:>11}" for m in metrics)
    lines = [header, "-" * len(header)]
    for r in run.samples:
        lines.append(f"{r.id[:22]:<22} {r.intent[:9]:<9} " + " ".join(f"{_fmt(r.scores.get(m)):>11}" for m in metrics))
    lines.append("-" * len(header))
    lines.append(f"{'mean':<32} " + " ".join(f"{_fmt(run.means[m]):>11}" for m in metrics))
    return "\n".join(lines)
