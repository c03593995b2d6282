"""What the character keeps of each member, and what members decide about it.

- **Consent to training.** Discord's Developer Policy forbids training AI models on message content
  obtained through its API without Discord's permission. So by default (TRAINING_CONSENT=consented)
  the voice trains only on the messages of members who consented (`!consent`, or the role named by
  CONSENT_ROLE_ID) and on exports the admin imported with `--licensed` (declaring they may use them);
  `!consent off` withdraws, which for training acts like forgetting. Private threads are never
  trained on.
- **A member's own view** (`!mydata`): what is stored, indexed and in training files, and their choices.
- **Retention** (RETENTION_DAYS): older messages are deleted everywhere.
- **Adapters trained on data that is gone.** An adapter records the ids of the messages and members
  it was trained on, and a short hash of each message's words (`trained_on.json`); once one of those
  messages is deleted or edited, or one of those members forgets or withdraws, the adapter is stale
  until trained again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from indexes.forget import by_author, by_message, scrub_training, training_files
from indexes.records import StoredMessage, content_digest
from indexes.store import MessageStore

logger = logging.getLogger(__name__)

TRAINED_ON = "trained_on.json"


ALL_WARNING = (
    "TRAINING_CONSENT=all: training on every stored message, consent or not. Discord's Developer Policy "
    "forbids training on message content from its API without Discord's permission"
)


def excluded_authors(store: MessageStore) -> set[int]:
    """Members whose words no training may use: opted out, or consent withdrawn."""
    withdrawn = {user for user, (given, _) in store.consent().items() if not given}
    return store.opted_out() | withdrawn


def trainable(store: MessageStore, mode: str, warn: bool = True) -> Callable[[StoredMessage], bool]:
    """Which stored messages training may use, by TRAINING_CONSENT (`consented` or `all`; `warn`: say what `all`
    means, once per run: a second look at the same run's data says nothing new)."""
    excluded = excluded_authors(store)
    consented = {user for user, (given, _) in store.consent().items() if given}
    if mode == "all":
        if warn:
            logger.warning("%s", ALL_WARNING)
        return lambda m: not m.private and m.author_id not in excluded
    return lambda m: not m.private and m.author_id not in excluded and (m.author_id in consented or m.licensed)


@dataclass
class MemberData:
    """What the character keeps about one member (for `!mydata`)."""

    stored: int = 0
    indexed: int = 0
    training_samples: int = 0
    consent: str = "not given"
    opted_out: bool = False
    adapters: int = 0  # adapters trained on their words

    def summary(self, prefix: str = "!") -> str:
        """What a member is told; `prefix`: how they asked (`/` for a slash command), to name the commands so."""
        if self.opted_out:
            return f"You opted out ({prefix}forgetme): none of your messages are kept, and new ones are not collected."
        return (
            f"Stored: {self.stored} of your messages ({self.indexed} searchable as lore). "
            f"In training data: {self.training_samples} samples. Adapters trained on your words: {self.adapters}. "
            f"Consent to training: {self.consent} (`{prefix}consent on` / `{prefix}consent off`). "
            f"`{prefix}forgetme` removes everything."
        )


def member_data(store: MessageStore, index, data_dir: Path, adapters_dir: Path, user_id: int) -> MemberData:
    """Everything the character keeps about a member, counted (never their words)."""
    found = MemberData(opted_out=user_id in store.opted_out())
    found.stored = store.count_by(user_id)
    found.indexed = index.authored(user_id) if index is not None else 0
    holds = by_author(user_id)
    for path in training_files(data_dir):
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    sample = json.loads(line)
                except ValueError:
                    continue
                found.training_samples += isinstance(sample, dict) and holds(sample)
    given = store.consent().get(user_id)
    if given is not None:
        found.consent = ("given" if given[0] else "withdrawn") + (" (by role)" if given[1] == "role" else "")
    found.adapters = sum(user_id in trained_on(adapter)[1] for adapter in adapters(adapters_dir))
    return found


def adapters(adapters_dir: Path) -> list[Path]:
    """The adapters that record what they were trained on."""
    return sorted(p.parent for p in adapters_dir.glob(f"*/{TRAINED_ON}")) if adapters_dir.is_dir() else []


def trained_on(adapter: Path) -> tuple[set[int], set[int]]:
    """(message ids, author ids) an adapter was trained on; empty when it does not say."""
    try:
        data = json.loads((adapter / TRAINED_ON).read_text(encoding="utf-8"))
        return {int(i) for i in data.get("message_ids", [])}, {int(i) for i in data.get("author_ids", [])}
    except (OSError, ValueError, TypeError):
        return set(), set()


def digests(store: MessageStore, ids: set[int]) -> dict[int, str]:
    """A short hash of each stored message's words (never the words): what an adapter learned, to tell an edit."""
    return {i: content_digest(m.content) for i, m in store.get(ids).items()}


def learned_digests(adapter: Path) -> dict[int, str]:
    """The digests of the words an adapter learned, by message id; empty when it does not say."""
    try:
        data = json.loads((adapter / TRAINED_ON).read_text(encoding="utf-8")).get("digests", {})
        return {int(i): str(d) for i, d in data.items()}
    except (OSError, ValueError, TypeError, AttributeError):
        return {}


def edited_since(store: MessageStore, learned: dict[int, str]) -> int:
    """How many of these messages say something else now than the words learned (a deleted one is not counted)."""
    now = digests(store, set(learned))
    return sum(1 for i, digest in learned.items() if i in now and now[i] != digest)


def staleness(store: MessageStore, adapter: Path | None) -> str | None:
    """Why an adapter must be trained again (its data deleted, edited, forgotten or withdrawn since), or None."""
    if adapter is None or not (adapter / TRAINED_ON).is_file():
        return None
    messages, authors = trained_on(adapter)
    gone = len(messages) - len(store.get(messages))
    edited = edited_since(store, learned_digests(adapter))
    left = len(authors & excluded_authors(store))
    if not gone and not edited and not left:
        return None
    return (
        f"adapter {adapter.name} was trained on {gone} messages deleted since, {edited} edited since (in the words "
        f"they no longer say) and on {left} members who forgot or withdrew consent: train it again "
        "(python -m app train, or !train) and it leaves them out"
    )


def prune(store: MessageStore, days: int | None, data_dir: Path) -> list[int]:
    """RETENTION_DAYS: delete the older messages from the store and the training files; returns their ids.

    The index follows the store's log; a running bot also drops them from its memory (Runtime.delete).
    """
    ids = expired(store, days)
    if ids:
        contents = [m.content for m in store.get(ids).values()]
        store.delete(ids)
        scrub_training(data_dir, by_message(set(ids), contents))
        logger.info("%d messages older than %d days deleted (RETENTION_DAYS)", len(ids), days)
    return ids


def expired(store: MessageStore, days: int | None, now: datetime | None = None) -> list[int]:
    """The ids of the messages older than `days` (RETENTION_DAYS; None: none expire)."""
    if not days:
        return []
    cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=days)
    return store.ids_before(cutoff)
