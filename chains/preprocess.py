"""Intent and tone of the triggering message, and what the reply needs because of them.

Rules, not a model: they cost microseconds, and `--explain` can say exactly why a message was
read the way it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

INTENTS = ("greeting", "feedback", "lore", "question", "request", "banter")

_GREETING = re.compile(
    r"^\W*(hi+|hey+|hello|yo|hiya|howdy|good (morning|evening|night|afternoon)|gm|sup|mornin\w*)\b", re.I
)
_FEEDBACK = re.compile(
    r"\b(good|bad|great|nice|smart|dumb|stupid) (bot|cat|kitty|job)\b|\b(thanks?|thank you|thx|ty)\b", re.I
)
_LORE = re.compile(
    r"\b(lore|legend|story|history|remember|happened|record|who (is|was|holds|won)|when did|"
    r"tell me about|what('?s| is| was) the|founded|curse[d]?|rules?|award|pinned?)\b",
    re.I,
)
_QUESTION = re.compile(r"\?\s*$|^\W*(who|what|when|where|why|how|which|is|are|do|does|did|can|could|should)\b", re.I)
_REQUEST = re.compile(r"^\W*(please|pls|can you|could you|would you|tell|show|give|say|write|sing|explain)\b", re.I)
_POSITIVE = {
    "love",
    "great",
    "awesome",
    "nice",
    "cool",
    "happy",
    "thanks",
    "thank",
    "yay",
    "good",
    "best",
    "fun",
    "cute",
    "lol",
    "congrats",
}
_NEGATIVE = {"hate", "sad", "bad", "awful", "boring", "angry", "annoying", "worst", "ugh", "terrible", "rip", "lost"}
_HOSTILE = {"stupid", "idiot", "dumb", "shut", "useless", "trash", "garbage", "kill", "hate", "moron", "stfu"}
_INJECTION = re.compile(
    r"ignore (all |your |the )?(previous |prior )?(instructions|persona|rules|prompt)"
    r"|you are now|pretend to be|say ['\"]?\w+:",
    re.I,
)
_MASS_PING = re.compile(r"@(everyone|here)|<@&\d+>", re.I)
_WORD = re.compile(r"[a-z']+")


@dataclass(frozen=True)
class Tone:
    """Sentiment in [-1, 1], excitement and hostility in [0, 1]."""

    sentiment: float = 0.0
    excitement: float = 0.0
    hostility: float = 0.0


@dataclass(frozen=True)
class Analysis:
    """How the message was read, and what the reply therefore needs."""

    intent: str
    tone: Tone
    needs_lore: bool
    query: str  # the text used to search lore
    flags: tuple[str, ...] = field(default_factory=tuple)  # e.g. "injection", "mass_ping"


def strip_mentions(text: str, names: tuple[str, ...]) -> str:
    """The message without @mentions of the character and Discord mention markup."""
    text = re.sub(r"<@!?&?\d+>", " ", text)
    for name in names:
        text = re.sub(rf"@{re.escape(name)}\b[,:]?", " ", text, flags=re.I)
    return re.sub(r"\s+", " ", text).strip()


def read_tone(text: str) -> Tone:
    words = _WORD.findall(text.lower())
    pos = sum(w in _POSITIVE for w in words)
    neg = sum(w in _NEGATIVE for w in words)
    sentiment = 0.0 if pos + neg == 0 else (pos - neg) / (pos + neg)
    letters = [c for c in text if c.isalpha()]
    caps = sum(c.isupper() for c in letters) / len(letters) if len(letters) >= 6 else 0.0
    emoji = sum(ord(c) > 0x2600 for c in text)
    excitement = min(1.0, text.count("!") * 0.25 + caps * 0.8 + emoji * 0.15)
    hostility = min(1.0, sum(w in _HOSTILE for w in words) * 0.5)
    return Tone(round(sentiment, 2), round(excitement, 2), round(hostility, 2))


def analyze(text: str, character: str) -> Analysis:
    """Classify the intent and tone of a message addressed to the character."""
    body = strip_mentions(text, (character,))
    flags = []
    if _INJECTION.search(body):
        flags.append("injection")
    if _MASS_PING.search(text):
        flags.append("mass_ping")
    if not body:
        intent = "greeting"
    elif _LORE.search(body):
        intent = "lore"
    elif _QUESTION.search(body):
        intent = "question"
    elif _GREETING.search(body):
        intent = "greeting"
    elif _FEEDBACK.search(body):
        intent = "feedback"
    elif _REQUEST.search(body):
        intent = "request"
    else:
        intent = "banter"
    needs_lore = intent in ("lore", "question", "request") and len(body) >= 4
    return Analysis(intent, read_tone(body), needs_lore, body[:500], tuple(flags))
