"""`python -m training.data_prep`: the message store as channel situations for LoRA training.

Each sample is a moment of the channel as the bot would meet it: the preceding messages
(`history`), the message being answered (`message`) and what a member actually answered
(`target`). The target's author plays the character in that sample, so their own earlier
messages in the history are the character's turns. The samples hold no prompt text: the trainer
renders them with the prompt files, persona and tokenizer it trains for (`training.render`), the
very assembly a live reply uses. Samples carry `author_ids` (everyone whose words are in them), so
`forget` can remove a member from the data, and `message_ids`, so that a deleted message leaves it.
Only messages training may use are read (indexes.members.trainable: by default members who
consented and licensed exports, never private threads). Targets from bots, commands, members who opted out,
very short or link-only messages, near-duplicates and messages that only continue their author's
own previous message are dropped. The split is by time: the newest `--validation` share is held out.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import sys
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

from errors import UserError
from indexes.filters import Filters
from indexes.records import StoredMessage

logger = logging.getLogger(__name__)

MIN_SAMPLES = 20
FORMAT = (
    3  # 3: samples carry `message_ids`; 2: without them; 1 (unversioned): a fixed system line and `name: text` lines
)


class NotEnoughData(UserError, ValueError):
    """Too few samples to train on."""


class SampleFormatError(UserError, ValueError):
    """A training data file written in another format; the message says how to write it again."""


@dataclass
class PrepReport:
    read: int = 0
    kept: int = 0
    train: int = 0
    validation: int = 0
    dropped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = ", ".join(f"{k} {v:,}" for k, v in sorted(self.dropped.items())) or "none"
        return (
            f"messages    {self.read:,} read\n"
            f"samples     {self.kept:,} kept ({self.train:,} train, {self.validation:,} validation by time)\n"
            f"dropped     {sum(self.dropped.values()):,} targets ({reasons})"
        )


def _fingerprint(text: str) -> str:
    """Same text up to case, punctuation, digits and spacing: a near-duplicate."""
    return re.sub(r"[\W\d_]+", "", text.lower())


def _turn(message: StoredMessage, target_author: int) -> dict:
    return {"author": message.speaker, "content": message.content, "own": message.author_id == target_author}


def build_samples(
    messages: list[StoredMessage],
    context: int = 6,
    min_chars: int = 8,
    persona_user: int | None = None,
    opted_out: set[int] = frozenset(),
) -> tuple[list[dict], PrepReport]:
    """Samples in time order and what was dropped, by reason."""
    report = PrepReport()
    filters = Filters(opted_out=frozenset(opted_out))
    samples: list[dict] = []
    seen: set[str] = set()
    history: dict[int, deque] = {}
    for message in messages:
        report.read += 1
        window = history.setdefault(message.channel_id, deque(maxlen=context))
        reason = filters.reason(message)
        if reason is None and len(message.content.strip()) < min_chars:
            reason = "too_short"
        if reason is None and persona_user is not None and message.author_id != persona_user:
            reason = "other_member"
        if reason is None and not window:
            reason = "no_context"
        if reason is None and window[-1].author_id == message.author_id:
            reason = "continues_own_message"  # the bot never answers its own message
        if reason is None:
            fingerprint = _fingerprint(message.content)
            if fingerprint in seen:
                reason = "near_duplicate"
            seen.add(fingerprint)
        if reason:
            report.dropped[reason] += 1
        else:
            *before, answered = window
            samples.append(
                {
                    "format": FORMAT,
                    "history": [_turn(m, message.author_id) for m in before],
                    "message": _turn(answered, message.author_id),
                    "target": message.content.strip(),
                    "author_ids": sorted({m.author_id for m in window} | {message.author_id}),
                    "message_ids": [m.id for m in window] + [message.id],
                    "target_author": message.speaker,
                    "timestamp": message.timestamp.isoformat(),
                }
            )
        if filters.reason(message) is None:  # context keeps every kept channel message
            window.append(message)
    report.kept = len(samples)
    return samples, report


def split_by_time(samples: list[dict], validation: float) -> None:
    """Mark the newest `validation` share as validation, the rest as train (in place)."""
    held_out = max(1, int(round(len(samples) * validation))) if samples and validation > 0 else 0
    for i, sample in enumerate(samples):
        sample["split"] = "validation" if i >= len(samples) - held_out else "train"


def write_jsonl(samples: list[dict], path: Path) -> str:
    """Write atomically; returns the sha256 of the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    digest = hashlib.sha256()
    with open(temporary, "w", encoding="utf-8") as out:
        for sample in samples:
            line = json.dumps(sample, ensure_ascii=False) + "\n"
            digest.update(line.encode("utf-8"))
            out.write(line)
    temporary.replace(path)
    return digest.hexdigest()


def read_jsonl(path: Path, text: str | None = None) -> tuple[list[dict], list[str]]:
    """Samples of a JSONL file (or of its `text`, already read) and one warning per corrupt line.

    A file in another format (such as the fixed system line and single user turn written before
    FORMAT 2, or samples without `message_ids` before FORMAT 3) raises SampleFormatError: its prompts
    would not be those the bot serves, or a deleted message could not be told in it.
    """
    samples, problems, other_format = [], [], 0
    if text is None:
        text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines: U+2028 is inside lines
        if not line.strip():
            continue
        try:
            sample = json.loads(line)
            if not isinstance(sample, dict):
                raise ValueError("not a JSON object")
            if sample.get("format") != FORMAT and ("messages" in sample or "format" in sample):
                other_format += 1
                continue
            if not isinstance(sample.get("message"), dict) or not isinstance(sample.get("target"), str):
                raise ValueError("no 'message' and 'target'")
            if not isinstance(sample.get("history", []), list):
                raise ValueError("'history' is not a list")
        except ValueError as exc:
            problems.append(f"{path}: line {number}: skipped, not a training sample ({exc})")
            continue
        samples.append(sample)
    if other_format:
        raise SampleFormatError(
            f"{path}: {other_format} samples in another format than this version's (format {FORMAT}); "
            "write them again with `python -m training.data_prep`"
        )
    return samples, problems


def prepare(
    settings,
    out: Path | None = None,
    context: int = 6,
    min_chars: int = 8,
    persona_user: int | None = None,
    validation: float = 0.1,
    min_samples: int = MIN_SAMPLES,
) -> PrepReport:
    from indexes.forget import training_lock
    from indexes.members import trainable
    from indexes.store import MessageStore

    out = out or settings.training_data
    store = MessageStore(settings.store_path)
    try:
        allowed = trainable(store, settings.TRAINING_CONSENT)
        messages, without_consent = [], 0
        for message in store.iter_messages(settings.DISCORD_CHANNEL_ID):
            if allowed(message):
                messages.append(message)
            else:
                without_consent += 1
        samples, report = build_samples(messages, context, min_chars, persona_user, store.opted_out())
        report.read += without_consent
        if without_consent:
            report.dropped["no_consent"] += without_consent
        read = {message.id: message.content for message in messages}
        with training_lock(settings.DATA_DIR):
            samples = _still_trainable(samples, read, store, settings.TRAINING_CONSENT, report)
            if len(samples) < min_samples:
                hint = (
                    "members consent with !consent; exports you may use are imported with --licensed"
                    if settings.TRAINING_CONSENT == "consented"
                    else "import more history first"
                )
                raise NotEnoughData(f"not enough data ({len(samples)} samples, need {min_samples}): {hint}")
            split_by_time(samples, validation)
            report.validation = sum(s["split"] == "validation" for s in samples)
            report.train = len(samples) - report.validation
            write_jsonl(samples, out)
    finally:
        store.close()
    return report


def _still_trainable(samples: list[dict], read: dict[int, str], store, consent: str, report: PrepReport) -> list[dict]:
    """The samples none of whose messages was deleted, edited, forgotten or withdrawn since it was read.

    Checked under the training files' lock (indexes.forget.training_lock), just before the file is
    written: a change the store took before the check is seen here, and the scrub of one it takes
    after waits for the file and drops it there (a file under DATA_DIR: the scrubs read no other). Either way no
    deleted word is left in the file.
    """
    from indexes.members import trainable

    allowed = trainable(store, consent, warn=False)  # opted out and withdrawn members are not
    ids = {message_id for sample in samples for message_id in sample["message_ids"]}
    current = store.get(ids)
    changed = {
        message_id
        for message_id in ids
        if (now := current.get(message_id)) is None or now.content != read[message_id] or not allowed(now)
    }
    kept = [sample for sample in samples if changed.isdisjoint(sample["message_ids"])]
    if len(kept) < len(samples):
        report.dropped["changed_since_read"] += len(samples) - len(kept)
        report.kept = len(kept)
    return kept


def main(argv: list[str] | None = None) -> int:
    from config.logs import setup_logging
    from config.settings import load_settings

    parser = argparse.ArgumentParser(prog="python -m training.data_prep", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out",
        type=Path,
        help="default: DATA_DIR/training_data.jsonl; a file outside DATA_DIR is not scrubbed when members delete or "
        "withdraw their words",
    )
    parser.add_argument("--context", type=int, default=6, help="preceding messages per sample")
    parser.add_argument("--min-chars", type=int, default=8, help="shorter targets are dropped")
    parser.add_argument(
        "--persona-user", type=int, metavar="ID", help="learn one member's voice: only their messages are targets"
    )
    parser.add_argument("--validation", type=float, default=0.1, help="newest share held out for validation")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        setup_logging(settings.LOG_LEVEL)
        report = prepare(settings, args.out, args.context, args.min_chars, args.persona_user, args.validation)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"written     {args.out or settings.training_data}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
