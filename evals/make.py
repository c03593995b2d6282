"""`python -m evals make --from PATH`: draft an eval set from a server's history, for review.

Two kinds of samples: each lore post (pinned, well reacted, announcements) becomes a lore lookup
whose reference context is the post; each question members asked that got answers becomes a
question whose reference is the first answer and whose contexts are the answers. Drafts are
starting points: the admin edits the questions and references before using the set.
"""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from pathlib import Path

from evals.dataset import DatasetError, EvalSample, save_dataset

HEADER = "# DRAFT eval set made by `python -m evals make`: review every question and reference before use.\n"


def _topic(text: str, words: int = 8) -> str:
    first = re.split(r"(?<=[.!?:])\s", text.strip(), maxsplit=1)[0]
    return " ".join(first.split()[:words]).rstrip(".:!,")


def draft(messages: list, character: str, limit: int = 40) -> list[EvalSample]:
    from indexes.lore import LORE_THRESHOLD

    by_id = {m.id: m for m in messages}
    replies = defaultdict(list)
    for m in messages:
        if m.reply_to in by_id:
            replies[m.reply_to].append(m)
    samples: list[EvalSample] = []
    lore = sorted((m for m in messages if m.lore_score >= LORE_THRESHOLD), key=lambda m: -m.lore_score)
    for m in lore:
        samples.append(
            EvalSample(
                id=f"lore-{m.id}",
                intent="lore",
                asker="member",
                question=f"@{character} what do you know about {_topic(m.content)}?",
                reference=m.content[:300],
                reference_contexts=(m.content,),
            )
        )
    for m in messages:
        answers = replies.get(m.id, [])
        if m.content.rstrip().endswith("?") and answers:
            samples.append(
                EvalSample(
                    id=f"question-{m.id}",
                    intent="question",
                    asker=m.speaker,
                    question=f"@{character} {m.content.strip()}",
                    reference=answers[0].content,
                    reference_contexts=tuple(a.content for a in answers),
                )
            )
    return samples[:limit]


def make_from_export(source: Path, out: Path, character: str, limit: int = 40) -> int:
    from indexes.filters import Filters
    from indexes.importer import import_exports
    from indexes.store import MessageStore

    with tempfile.TemporaryDirectory() as folder:
        store = MessageStore(Path(folder) / "messages.sqlite3")
        report = import_exports(store, source, Filters(), progress=False)
        if report.failed:
            raise DatasetError("; ".join(f.error for f in report.failed))
        samples = draft(list(store.iter_messages()), character, limit)
        store.close()
    save_dataset(out.stem, samples, out, HEADER)
    return len(samples)
