"""Links in a reply: the character never posts a link a member did not see it write.

A reply can quote a member's post (the answer line does, word for word) or a model can make one up,
and a link from the character carries its trust. So, in every reply and every streamed piece:

- a masked link `[label](https://real.example/path)` becomes `label (real.example)`: the label and
  where it really leads, never a link under another name;
- a plain link becomes its domain (`https://dlscord-nitro.example/?id=3` -> `dlscord-nitro.example`,
  which Discord does not turn into a link), and the name its path ends in when it ends in one
  (`https://github.com/o/r/releases/tag/v0.9.2-fix` -> `github.com/…/v0.9.2-fix`: a release or a file
  is often what a member's post says), unless the domain is one an admin allows
  (ALLOWED_LINK_DOMAINS, and their subdomains);
- an invite (discord.gg/..., discord.com/invite/...) is removed unless its code is allowed
  (ALLOWED_INVITES);
- a raw user mention (`<@123>`) becomes `@member`, and right-to-left overrides and other direction
  controls (which can make `exe.txt` read `txt.exe`) are removed.

Domains are shown as ASCII (IDNA), so a look-alike domain shows what it is (`xn--...`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

_URL = r"<?(?:https?://|www\.)[^\s<>()\[\]]+(?:\([^\s<>()]*\)[^\s<>()\[\]]*)*>?"
_MASKED = re.compile(rf"\[(?P<label>[^\[\]]{{0,200}})\]\(\s*(?P<url>{_URL})(?:\s+\"[^\"]*\")?\s*\)")
_INVITE = re.compile(
    r"<?(?:https?://)?(?:www\.)?(?:discord(?:app)?\.com/invite|discord\.gg|dsc\.gg)/(?P<code>[A-Za-z0-9-]+)>?", re.I
)
_PLAIN = re.compile(_URL, re.I)
_USER_MENTION = re.compile(r"<@!?\d{5,25}>")
_DIRECTION = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAME = re.compile(r"[^\W\d_]{3,}|\w+(?:[-_.]\w+)+")  # "README", "0.9.2-OTAFIX2.0-BP1.2", "Curves.sol"


def name_in(url: str) -> str:
    """The name a link's path ends in ("Curves.sol" for ".../contracts/Curves.sol#L439"), or "".

    Ids, hashes and numbers (".../issues/123", "youtu.be/dQw4w9WgXcQ", a commit) are no name.
    """
    try:
        path = urlsplit(url.lstrip("<").rstrip(".,;:!?'\")*_~>")).path
    except ValueError:
        return ""
    name = unquote(path.rstrip("/").rpartition("/")[2])
    return name if _NAME.fullmatch(name) else ""


def domain_of(url: str) -> str:
    """Where a link really leads, in ASCII: its host, lower-cased ("" when it has none)."""
    url = url.strip("<>")
    if url.lower().startswith("www."):
        url = "https://" + url
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return ""
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        return host.lower()


def as_read(text: str) -> str:
    """A text as a member reads it in Discord: a masked link is its label, a plain link the name its path ends in.

    A release or a file is often what a post says ("Here it is! https://.../releases/tag/0.9.2-OTAFIX2.0-BP1.2"); the
    host, the rest of the path and ids are no words of it.
    """
    text = _MASKED.sub(lambda masked: masked["label"], text)
    return " ".join(_PLAIN.sub(_name_read, text).split())


def without_links(text: str) -> str:
    """A text without its links (a masked link keeps its label): what its words say, not where they point."""
    return _PLAIN.sub(" ", _MASKED.sub(lambda masked: masked["label"], text))


def _name_read(link: re.Match[str]) -> str:
    found = link.group(0)
    url = found.rstrip(".,;:!?'\"")  # sentence punctuation after a link is not part of it
    return name_in(url) + found[len(url) :]


@dataclass(frozen=True)
class LinkPolicy:
    """What the character may post of links: ALLOWED_LINK_DOMAINS whole, ALLOWED_INVITES' invites."""

    allowed_domains: frozenset[str] = frozenset()
    allowed_invites: frozenset[str] = frozenset()

    @classmethod
    def from_lists(cls, domains=(), invites=()) -> LinkPolicy:
        return cls(
            frozenset(d.strip().lower() for d in domains if d.strip()),
            frozenset(i.strip() for i in invites if i.strip()),
        )

    def allows(self, domain: str) -> bool:
        return any(domain == d or domain.endswith("." + d) for d in self.allowed_domains)

    def apply(self, text: str) -> tuple[str, list[str]]:
        """The text with its links made safe to post; returns it and the fixes applied."""
        fixes: list[str] = []

        def unmask(match: re.Match) -> str:
            fixes.append("unmasked a link")
            label, domain = match["label"].strip(), domain_of(match["url"])
            if self.allows(domain) and not _INVITE.fullmatch(match["url"].strip("<>")):
                return f"{label} ({match['url'].strip('<>')})" if label else match["url"].strip("<>")
            return f"{label} ({domain})" if label and domain else label or domain

        def invite(match: re.Match) -> str:
            if match["code"] in self.allowed_invites:
                return match.group(0)
            fixes.append("removed an invite")
            return "(invite removed)"

        def plain(match: re.Match) -> str:
            found = match.group(0)
            url = found.rstrip(".,;:!?'\"")  # sentence punctuation after a link is not part of it
            trail, domain = found[len(url) :], domain_of(url)
            if self.allows(domain):
                return found
            fixes.append("link shown as its domain")
            name = name_in(url)
            return (f"{domain}/…/{name}" if name and domain else domain) + trail

        text = _MASKED.sub(unmask, text)
        text = _INVITE.sub(invite, text)
        text = _PLAIN.sub(lambda m: m.group(0) if _INVITE.fullmatch(m.group(0)) else plain(m), text)
        if _USER_MENTION.search(text):
            text = _USER_MENTION.sub("@member", text)
            fixes.append("neutralised a user mention")
        if _DIRECTION.search(text):
            text = _DIRECTION.sub("", text)
            fixes.append("removed direction controls")
        return text, list(dict.fromkeys(fixes))
