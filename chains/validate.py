"""Validation of a generated reply: repair what can be repaired, reject what cannot.

Always repaired in place: @everyone/@here neutralised (also when followed by a letter, as in
"@everyone_"), role pings removed, a speaker label the reply opens with ("Susu: ...", "bob: ...")
removed (the text is kept: the character says it), everything from a later line in which the model
speaks as another member on cut (or from a sentence inside a line that opens with a member's label: "we
raised 2,340 euros. alice: thank you"), everything from where the character says it is a member on cut
("Good evening. I am Bob.", "Bob here, ...": `_claim_within`), chat-template leftovers cut, length capped.
Rejected (so the chain retries once, then falls back to an in-character line): empty, an echo of the message, or
out of character (talking about being an AI or a model).

Who counts as another member is decided by the names the bot knows (`Members`: the recent window,
the lore it showed, the store), compared by what they look like (`names.skeleton`: look-alike
letters from other scripts and accents folded, spaces, a `#1234` discriminator and symbols around
the name ignored), in any of the forms a line can take: "bob: ...", "bob：..." (full-width),
"> bob: ...", "- bob: ...", "# bob: ...", "-# bob: ...", "🐱 bob: ...", "[bob] ...", "<bob> ...",
"bob said: ...", and after any line break Discord renders (\r, U+2028, ...). "Yes: ..." or
"Reminder: ..." are not members, so they stay.

Links (chains.links): the character never posts a link a member did not see it write. A masked link
shows its label and its real destination's domain, a plain link only its domain, an invite is
removed unless an admin allowed it, raw user mentions and right-to-left overrides are neutralised.

`stream_view` applies the same repairs to a reply that is still being generated, showing only
what can no longer change into something unsafe.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rapidfuzz import fuzz

from chains.links import LinkPolicy
from chains.names import ZERO_WIDTH, skeleton
from chains.types import Verdict

ZERO_WIDTH_SPACE = "\u200b"
_TEMPLATE_LEFTOVERS = re.compile(r"<\|[A-Za-z0-9_]+\|>|</s>|\[/?INST\]|<s>|<</?SYS>>", re.I)
_MASS_PING = re.compile(r"@(everyone|here)", re.I)
_ROLE_PING = re.compile(r" ?<@&\d+>")
_COLONS = ":\uff1a\ufe55\ua789\u2236"
_DECORATION = re.compile(r"^[\s*_~`|]*")
_LIST_PREFIX = re.compile(r"^(?:>+|-#|#{1,6}(?=\s)|[-*\u2022+]|\d{1,3}[.)])\s*")  # quote, subtext, header, list
# Every line break Discord renders: a model may end a line with any of them.
LINE_BREAKS = re.compile(r"\r\n|[\r\n\u2028\u2029\x0b\x0c\x85]")
_DISCRIMINATOR = re.compile(r"#\d{4}\s*$")
_EDGE_SYMBOLS = re.compile(r"^[\W_]+|[\W_]+$")
_LABEL = re.compile(rf"^@?(?P<name>[^\n{_COLONS}]{{1,48}}?)[\s*_~`]*[{_COLONS}]")
_BRACKETED = re.compile(r"^[\[<](?P<name>[^\]>\n]{1,48})[\]>]")
_SAID = re.compile(
    rf"^@?(?P<name>[^\n{_COLONS}]{{1,48}}?)\s+(?:said|says|wrote|writes|replied|replies|asked|asks)\b", re.I
)
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])\s+")  # where the next sentence of a line may open another member's turn
_TRAILING_SYMBOLS = re.compile(r"[\W_]+$")
# The character saying it is someone: "I am Bob.", "I'm bob!", "my name is bob and ...". The name runs to the end of
# the sentence, a comma, "here", "and" or "from" ("I'm happy to help" names nobody); whether it is a member's,
# `Members` says, but never a word written in lowercase that says how one is ("I'm sure!", even with a member
# called "sure"). What the reply quotes ("as dex put it: "I am dex and ..."", "> I am dex") is not the character's.
_OPENERS = ("i am ", "i'm ", "i\u2019m ", "im ", "my name is ", "my name's ", "my name\u2019s ")
_OPENER = r"(?<![\w'\u2019])(?:i\s+am|i['\u2019]?m|my\s+name\s+is|my\s+name['\u2019]s)"  # _OPENERS, any spacing
_CLAIMS_TO_BE = re.compile(
    rf"(?i){_OPENER}\s+(?P<name>[^\s.,!?;:\n][^.,!?;:\n]{{0,47}}?)\s*(?P<end>[.,!?;:\n]|$|\s+(?:here|and|from)\b)"
)
# The character introducing itself as someone, the name first: "bob here, ..." or "Bob here!" opening a line or a
# sentence, "here" ending its clause ("bob here is my friend" introduces nobody).
_HERE_CLAIM = re.compile(
    r"[\s*_~`>-]*(?P<name>[^\n.,!?;:]{1,48}?)\s+here(?P<end>[ \t]*(?:[,.!?;:\u2013\u2014-]|\n|$))", re.I
)
_OPENS_CLAIM = re.compile(rf"(?i){_OPENER}\b[^.,!?;:\n]*$")  # said, its name not yet ended
_STATES = frozenset(
    "sure fine happy sorry glad back here ready good ok okay done tired bored busy new late home in out not so very "
    "just also still a an the all on up down off afraid excited curious hungry sleepy lost alive awake free open "
    "listening purring".split()
)
# A quote runs to its closing mark, the last of its line (a member's words may hold some), else to the line's end;
# a blockquote line is quoted whole.
_QUOTED = re.compile(
    r"\"[^\n]*\"|\"[^\n]*|\u201c[^\n]*\u201d|\u201c[^\n]*|\u201e[^\n]*[\u201c\u201d]|\u201e[^\n]*|\u00ab[^\n]*\u00bb|"
    r"\u00ab[^\n]*|(?<![\w])\u2018[^\n]*\u2019(?![\w])|(?m:^[ \t]*>[^\n]*)"
)
_OUT_OF_CHARACTER = re.compile(
    r"\b(as an ai|an ai (language )?model|language model|i am an ai|i'm an ai|ai assistant|"
    r"smollm|hugging ?face|openai|chatgpt|i am a bot|i'm a bot|my programming)\b",
    re.I,
)


def name_key(name: str) -> str:
    """What a name is compared by: its look (skeleton) without spaces, a discriminator or symbols around it."""
    text = skeleton(_DISCRIMINATOR.sub("", ZERO_WIDTH.sub("", name)))
    return re.sub(r"\s+", "", _EDGE_SYMBOLS.sub("", text))


class Members:
    """The member names the bot knows, by what they look like, to tell a line written as a member from any other."""

    def __init__(self, names: Iterable[str] = (), character: str = "") -> None:
        self.character = name_key(character)
        self.keys = {k for k in (name_key(name) for name in names) if k and k != self.character}
        if self.character:
            self.keys.add(name_key(f"{character} (member)"))

    def __contains__(self, name: str) -> bool:
        key = name_key(name)
        return bool(key) and key != self.character and key in self.keys

    def may_start(self, partial: str) -> bool:
        """True when `partial` (a line being written) could still become one of these names, or the character's."""
        key = name_key(partial)
        if not key:
            return True
        return any(name.startswith(key) or key.startswith(name) for name in (*self.keys, self.character) if name)


def _cap(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    cut = max(head.rfind(". "), head.rfind("! "), head.rfind("? "), head.rfind("\n"))
    if cut < limit // 2:
        cut = head.rfind(" ")
    return head[: cut + 1 if cut > 0 else limit - 1].rstrip() + "…"


def _bare_line(line: str) -> str:
    """A line without zero-width marks, markdown decoration and list, quote, header or subtext prefixes."""
    text = _DECORATION.sub("", ZERO_WIDTH.sub("", line))
    while (bare := _DECORATION.sub("", _LIST_PREFIX.sub("", text, count=1))) != text:
        text = bare
    return text


def speaker(line: str, members: Members, forms: tuple[re.Pattern, ...] = (_LABEL, _BRACKETED, _SAID)) -> str | None:
    """The known member a line is written as ("bob: I quit", "[bob] hi", "bob said: ...") or None; `forms`: the
    forms that count (inside a line, labels only: `_turn_within`)."""
    text = _bare_line(line)
    for pattern in forms:
        match = pattern.match(text)
        if match and match["name"].strip() in members:
            return match["name"].strip()
    return None


def _turn_within(line: str, members: Members) -> tuple[int, str] | None:
    """Where, inside a line, a sentence opens with a known member's label, and whose: the model starting that
    member's turn without a line break ("we raised 2,340 euros. alice: thank you everyone"). "bob said: ..."
    within a line is reported speech, not a turn."""
    for end in _SENTENCE_END.finditer(line):
        other = speaker(line[end.end() :], members, (_LABEL, _BRACKETED))
        if other:
            return end.start(), other
    return None


def _unquoted(text: str) -> str:
    """`text` with what it quotes blanked out, each character kept in its place."""
    return _QUOTED.sub(lambda quote: " " * len(quote.group()), text)


def _claim_within(text: str, members: Members, finished: bool = True) -> tuple[int, str] | None:
    """Where the character starts saying it is a known member ("I am Bob.", "my name is bob and ...", "bob here,
    ..."), and whose name it takes; None when it never does, outside what it quotes. Unless `finished`, a name the
    text ends in may still go on ("I'm bob" of "I'm bob's fan", "bob here" of "bob here is my friend") and does not
    count."""
    masked = _unquoted(text)
    found = []
    for match in _CLAIMS_TO_BE.finditer(masked):
        name = match["name"].strip()
        if not finished and not match["end"].strip():
            continue
        if name in members and not (name.islower() and name in _STATES):
            found.append((match.start(), name))
            break
    starts = {0, *(m.end() for m in re.finditer(r"\n", masked)), *(m.end() for m in _SENTENCE_END.finditer(masked))}
    for start in sorted(starts):
        match = _HERE_CLAIM.match(masked, start)
        if match is None or (not finished and not match["end"].strip()):
            continue
        name = match["name"].strip()
        if name in members:
            found.append((match.start("name"), name))
            break
    return min(found) if found else None


def _may_open_claim(text: str) -> int | None:
    """Where the character may be starting to say it is someone ("I am", "I a", "my name is bo"): its words are
    held back until what follows shows (a streamed reply never takes back what it showed). None if nowhere."""
    masked = _unquoted(text)
    opened = _OPENS_CLAIM.search(masked)
    if opened:
        return opened.start()
    for word in list(re.finditer(r"(?<![\w'\u2019])\w", masked))[-3:]:  # the last words may begin an opener
        if any(opener.startswith(masked[word.start() :].lower()) for opener in _OPENERS):
            return word.start()
    return None


def _opening_label(text: str, character: str, members: Members) -> int:
    """How many characters of `text` are a speaker label it opens with (the character's, or a member's)."""
    bare = _bare_line(text)
    skipped = len(text) - len(bare)
    own = re.match(rf"^@?{re.escape(character)}[\s*_~`]*[{_COLONS}]\s*", bare, re.I) if character else None
    if own:
        return skipped + own.end()
    for pattern in (_LABEL, _BRACKETED, _SAID):
        match = pattern.match(bare)
        if match and match["name"].strip() in members:
            rest = re.match(rf"[\s*_~`]*[{_COLONS}]?\s*", bare[match.end() :])
            return skipped + match.end() + (rest.end() if rest else 0)
    return 0


def _cut_speaker_lines(text: str, members: Members) -> tuple[str, str | None]:
    """The text up to the first line written as another member, or the first sentence within a line that opens
    with another member's label (`_turn_within`), and that member (or None)."""
    kept = []
    for line in text.split("\n"):
        other = speaker(line, members)
        if other:
            return "\n".join(kept), other  # the model has started another member's turn: the reply ends
        turn = _turn_within(line, members)
        if turn:
            return "\n".join([*kept, line[: turn[0]]]), turn[1]
        kept.append(line)
    return text, None


def _members(members: Iterable[str] | Members, character: str) -> Members:
    return members if isinstance(members, Members) else Members(members, character)


def repair(
    raw: str,
    character: str,
    members: Iterable[str] | Members = (),
    links: LinkPolicy | None = None,
    finished: bool = True,
) -> tuple[str, list[str]]:
    """Clean a raw generation; returns the text and the fixes applied. Unless `finished` (a reply still being
    generated), a member's name the text ends in may still go on and is not cut yet (`_claim_within`)."""
    known = _members(members, character)
    fixes: list[str] = []
    text = LINE_BREAKS.sub("\n", raw)
    leftover = _TEMPLATE_LEFTOVERS.search(text)
    if leftover:
        text = text[: leftover.start()]
        fixes.append("cut at chat-template token")
    text = text.strip()
    label = _opening_label(text, character, known)
    if label:
        fixes.append(f"removed the opening label {text[:label].strip()!r}")
        text = text[label:]
    text, other = _cut_speaker_lines(text, known)
    if other:
        fixes.append(f"dropped text written as {other!r}")
    claim = _claim_within(text, known, finished)
    if claim:  # the model has taken a member's place: from there on, nothing is the character's
        text = text[: claim[0]]
        fixes.append(f"dropped text claiming to be {claim[1]!r}")
    text = text.strip()
    if _MASS_PING.search(text):
        text = _MASS_PING.sub(lambda m: "@" + ZERO_WIDTH_SPACE + m.group(1), text)
        fixes.append("neutralised @everyone/@here")
    if _ROLE_PING.search(text):
        text = _ROLE_PING.sub("", text).strip()
        fixes.append("removed role ping")
    text, link_fixes = (links or LinkPolicy()).apply(text)
    return text, fixes + link_fixes


def validate(
    raw: str,
    message: str,
    character: str,
    max_chars: int,
    members: Iterable[str] | Members = (),
    links: LinkPolicy | None = None,
) -> Verdict:
    """Repair and judge one generated reply."""
    text, fixes = repair(raw, character, members, links)
    problems = []
    if not re.search(r"\w", text):
        problems.append("empty")
    elif len(message.strip()) >= 8 and fuzz.ratio(text.lower(), message.lower()) >= 90:
        problems.append("echo of the message")
    if _OUT_OF_CHARACTER.search(text):
        problems.append("out of character")
    if len(text) > max_chars:
        text = _cap(text, max_chars)
        fixes.append(f"capped at {max_chars} characters")
    return Verdict(ok=not problems, text=text, problems=tuple(problems), fixes=tuple(fixes))


def is_safe(text: str) -> bool:
    """True when text has no live mass or role ping."""
    return not _MASS_PING.search(text) and not _ROLE_PING.search(text)


def _may_become_label(text: str, members: Members) -> bool:
    """Could `text`, still being written, become a known member's label (or the character's)?"""
    bare = _bare_line(text)
    return not any(c in bare for c in _COLONS) and len(bare) <= 48 and (members.may_start(bare) or bare[:1] in "[<")


_UNFINISHED_MARKUP = re.compile(r"(<[^>\s]*|\[[^\]\n]*(?:\]\([^)\n]*)?|@\w*)$")  # a tag, a (masked) link, a mention


def stream_view(
    raw: str, character: str, max_chars: int, members: Iterable[str] | Members = (), links: LinkPolicy | None = None
) -> tuple[str, bool]:
    """What may be shown of a reply still being generated, and whether it has ended.

    The shown text is the repaired text (pings neutralised, labels and other members' lines
    removed) minus what the next pieces could still change: a last line that may yet turn into a
    known member's "name:" (or the character's own label), an unfinished `<...>`, `[INST` or
    `@word`. It is never longer than `max_chars`. `ended` is true once the model has started
    another member's line or a chat-template token: nothing after that belongs to the reply.
    """
    known = _members(members, character)
    raw = LINE_BREAKS.sub("\n", raw)
    ended = bool(_TEMPLATE_LEFTOVERS.search(raw))
    if not ended:
        lines = raw.lstrip().split("\n")
        ended = any(speaker(line, known) for line in lines[1:]) or any(_turn_within(line, known) for line in lines)
        ended = ended or _claim_within(raw, known, finished=False) is not None
    text, _ = repair(raw, character, known, links, finished=False)
    if not ended:
        last = raw.rsplit("\n", 1)[-1]
        sentences = _SENTENCE_END.split(last)
        if len(sentences) > 1 and _may_become_label(sentences[-1], known):
            last = sentences[-1]  # the sentence being written may still open "name: ..." inside the line
        if _may_become_label(last, known) and last.strip():
            # the line being written may still become "name: ...": hold it back
            text = text[: len(text) - len(last.strip())].rstrip() if text.endswith(last.strip()) else text
        elif not raw.endswith((" ", "\n")):  # the last word may not be finished yet
            space = max(text.rfind(" "), text.rfind("\n"))
            text = text[:space] if space > 0 else text
        text = _UNFINISHED_MARKUP.sub("", text)
        opened = _may_open_claim(text)
        if opened is not None:  # "I am bo" may yet become "I am bob.": held back until its name ends
            text = text[:opened].rstrip()
    text = text.rstrip()
    if _OUT_OF_CHARACTER.search(text) or not is_safe(text):
        return "", ended
    return (_cap(text, max_chars) if len(text) > max_chars else text), ended
