"""Forgetting a member who opted out: store, index and training data, and no collecting again.

Exports without member ids (plain text, CSV, older HTML) give a member an id derived from the name
they are shown by (`synthetic_user_id`). A member is forgotten under their Discord id, and under the
id derived from each name an admin gives (never from names a member's messages carry: a nickname
can be anyone's); every one of those ids is recorded as opted out, so later imports skip them too.

Replies to the member's messages were embedded together with them (indexes/vector.py): deleting
the member's messages logs those replies too, and the index embeds them again without them.

Training samples (JSONL written by training.data_prep) carry the ids of every member whose words
they contain in `author_ids`; each sample with one of the member's ids is dropped, the file
rewritten atomically, under the training files' lock (`training_lock`). An adapter already trained
still carries what it learned: retrain to drop that.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from filelock import FileLock

from indexes.exports.common import synthetic_user_id
from indexes.store import MessageStore
from indexes.vector import LoreIndex

logger = logging.getLogger(__name__)

TRAINING_LOCK = ".training.lock"


@dataclass
class ForgetReport:
    user_id: int
    messages: int = 0
    indexed: int = 0
    samples: dict[str, int] = field(default_factory=dict)
    names: tuple[str, ...] = ()

    def summary(self) -> str:
        samples = sum(self.samples.values())
        files = ", ".join(f"{name} {n}" for name, n in self.samples.items()) or "no training data"
        return (
            f"member {self.user_id} opted out: {self.messages} messages removed from the store, "
            f"{self.indexed} from the index, {samples} training samples removed ({files})"
            f"{'; also under the names ' + ', '.join(self.names) + ' (exports without ids)' if self.names else ''}; "
            "later imports and backfills skip this member. Adapters trained earlier still carry "
            "what they learned: retrain to drop it."
        )


def training_lock(data_dir: Path) -> FileLock:
    """The lock on DATA_DIR's training files, across processes: one writer at a time.

    `python -m training.data_prep` holds it while it checks its samples against the store and writes
    them; a scrub holds it while it rewrites the files. A message deleted (or a member forgotten) while
    samples are being made is then either seen by that check or scrubbed from the new file, and no two
    writers share a temporary file.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    return FileLock(str(data_dir / TRAINING_LOCK))


def training_files(data_dir: Path) -> list[Path]:
    return sorted([*data_dir.glob("*.jsonl"), *data_dir.glob("training/**/*.jsonl")])


def scrub_jsonl(path: Path, drop) -> int:
    """Rewrite a training file without the samples `drop(sample)` is true for; returns how many were dropped."""
    kept: list[str] = []
    dropped = 0
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                sample = json.loads(line)
            except json.JSONDecodeError:
                kept.append(line)
                continue
            if isinstance(sample, dict) and drop(sample):
                dropped += 1
            else:
                kept.append(line)
    if dropped:
        temporary = path.with_suffix(path.suffix + ".tmp")
        temporary.write_text("".join(kept), encoding="utf-8")
        os.replace(temporary, path)
    return dropped


def by_author(user_id: int):
    """A sample holding a member's words (its `author_ids`)."""
    return lambda sample: (
        user_id in sample.get("author_ids", []) or str(user_id) in map(str, sample.get("author_ids", []))
    )


def by_message(ids: set[int], contents: Iterable[str] = ()):
    """A sample holding one of these messages: by id, or (files written before ids were kept) by its words."""
    words = {" ".join(text.split()) for text in contents if text.strip()}

    def holds(sample: dict) -> bool:
        if "message_ids" in sample:
            return bool(ids & {int(i) for i in sample["message_ids"]})
        turns = [*sample.get("history", []), sample.get("message") or {}]
        said = {" ".join(str(t.get("content", "")).split()) for t in turns if isinstance(t, dict)}
        return bool(words & (said | {" ".join(str(sample.get("target", "")).split())}))

    return holds


def scrub_training(data_dir: Path, drop) -> dict[str, int]:
    """Every training file without the samples `drop` selects; returns the count per file."""
    dropped = {}
    with training_lock(data_dir):
        for path in training_files(data_dir):
            count = scrub_jsonl(path, drop)
            if count:
                dropped[path.name] = count
    return dropped


def member_ids(user_id: int, names: Iterable[str] = ()) -> tuple[set[int], tuple[str, ...]]:
    """The member's Discord id, and the ids exports without ids derive from the `names` given.

    Names are never taken from what a member's messages carry: anyone can take another member's
    name as a nickname, so only an admin names them (`python -m app forget --name`, after a preview).
    """
    known = sorted({n.strip() for n in names if n and n.strip()})
    return {user_id, *(synthetic_user_id(name) for name in known)}, tuple(known)


def preview(store: MessageStore, user_id: int, names: Iterable[str] = ()) -> str:
    """What forgetting would remove: messages per id and per name, with a few of the names' first words."""
    lines = [f"id {user_id}: {store.count_by(user_id)} messages"]
    for name in sorted({n.strip() for n in names if n and n.strip()}):
        derived = synthetic_user_id(name)
        found = store.authored_by(derived, 3)
        shown = "; ".join(f"{m.timestamp:%Y-%m-%d} {m.content[:40]!r}" for m in found)
        lines.append(
            f"name {name!r} (exports without ids): {store.count_by(derived)} messages{': ' + shown if shown else ''}"
        )
    return "\n".join(lines)


def forget_member(
    store: MessageStore, index: LoreIndex | None, data_dir: Path, user_id: int, names: Iterable[str] = ()
) -> ForgetReport:
    """Remove a member everywhere and record the opt-out (the store first: it gates everything else).

    Deleting the messages logs them, and the replies embedded with them, for the index; the index
    applies that at once (or at the next start, if this process dies first).
    """
    ids, known = member_ids(user_id, names)
    report = ForgetReport(user_id, names=known)
    for member in sorted(ids):
        if index is not None:
            report.indexed += index.authored(member)
        report.messages += store.forget(member, member=user_id)
        for name, dropped in scrub_training(data_dir, by_author(member)).items():
            report.samples[name] = report.samples.get(name, 0) + dropped
    if index is not None:
        try:
            index.sync()
        except Exception as exc:  # deleted and logged in the store: the index applies it at the next start
            logger.warning("the index will drop member %s's messages at its next sync: %s", user_id, exc)
    logger.info("%s", report.summary())
    return report
