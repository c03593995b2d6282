"""Eval sets: plain YAML files of questions, who asks, reference answers and reference contexts.

A set may name its own channel: `source` (an export, read as the store and index of that set, under
`data/evals/<name>/<export file>/`) and `persona` (the character who answers there). Paths are relative to the
repository root. A sample may list `facts`: each must appear in the reply for the answer to count as
correct; `|` separates accepted spellings, compared case-insensitively.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from errors import UserError

# The eval sets (see evals/README.md):
# - tuned: the sample server, and the real channel the weights were first tuned on (its export is read
#   from ../shared/data/real-exports/; where it is absent the set is skipped, visibly);
# - dev: real channels (exports shipped in evals/exports/) that retrieval and prompts are tuned on;
# - test: real channels nobody tuning has read: reported (`--dataset`), never tuned on, not in the default run.
# `python -m evals run` (and `make test`) runs, and the gate guards, the tuned and dev sets.
TUNED_SETS = (Path("evals/datasets/sample_server.yaml"), Path("evals/datasets/real_nextgen.yaml"))
DEV_SETS = tuple(Path(f"evals/datasets/dev_{name}.yaml") for name in ("curves", "revert", "meshcore", "maia"))
TEST_SETS = tuple(Path(f"evals/datasets/test_{name}.yaml") for name in ("aiarena", "golom", "pyscript"))
DEFAULT_SETS = TUNED_SETS + DEV_SETS
EVAL_SEED = 1234  # runs compare prompts and models, not sampling luck (used when SEED is unset)

INTENTS = {"lore", "question", "greeting", "banter", "request", "feedback", "off_topic"}


class DatasetError(UserError, ValueError):
    """An eval set cannot be used; the message names the file and the sample."""


@dataclass(frozen=True)
class EvalSample:
    id: str
    question: str
    reference: str
    asker: str = "member"
    intent: str = "question"
    reference_contexts: tuple[str, ...] = field(default_factory=tuple)
    facts: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class EvalSet:
    name: str
    path: Path
    samples: tuple[EvalSample, ...]
    source: Path | None = None  # the set's own channel export (None: the configured store and index)
    persona: Path | None = None

    @property
    def missing(self) -> str | None:
        """Why the set cannot run here (its export is not on this machine), or None."""
        if self.source is not None and not self.source.exists():
            return f"{self.source} not found"
        return None


def load_dataset(path: Path) -> EvalSet:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise DatasetError(f"{path}: cannot read the eval set: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("samples"), list) or not data["samples"]:
        raise DatasetError(f"{path}: expected a mapping with a non-empty 'samples' list")
    samples, seen = [], set()
    for position, raw in enumerate(data["samples"], start=1):
        where = f"{path}: sample #{position}"
        if not isinstance(raw, dict):
            raise DatasetError(f"{where}: must be a mapping")
        missing = [k for k in ("id", "question", "reference") if not str(raw.get(k) or "").strip()]
        if missing:
            raise DatasetError(f"{where}: missing {', '.join(missing)}")
        if raw["id"] in seen:
            raise DatasetError(f"{where}: duplicate id {raw['id']!r}")
        seen.add(raw["id"])
        intent = str(raw.get("intent", "question"))
        if intent not in INTENTS:
            raise DatasetError(f"{where} ({raw['id']}): intent {intent!r} is not one of {', '.join(sorted(INTENTS))}")
        samples.append(
            EvalSample(
                id=str(raw["id"]),
                question=str(raw["question"]),
                reference=str(raw["reference"]),
                asker=str(raw.get("asker") or "member"),
                intent=intent,
                reference_contexts=tuple(str(c) for c in raw.get("reference_contexts") or ()),
                facts=tuple(str(f) for f in raw.get("facts") or ()),
            )
        )
    source, persona = (Path(str(data[k])) if data.get(k) else None for k in ("source", "persona"))
    if persona is not None and not persona.is_file():
        raise DatasetError(f"{path}: persona {persona} not found")
    return EvalSet(str(data.get("name") or path.stem), path, tuple(samples), source, persona)


def save_dataset(eval_set_name: str, samples: list[EvalSample], path: Path, header: str = "") -> None:
    body = {
        "name": eval_set_name,
        "samples": [
            {
                "id": s.id,
                "intent": s.intent,
                "asker": s.asker,
                "question": s.question,
                "reference": s.reference,
                "reference_contexts": list(s.reference_contexts),
                **({"facts": list(s.facts)} if s.facts else {}),
            }
            for s in samples
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=120), encoding="utf-8")
