"""Generated replies against the validator and the answer line: names, separators, markdown, Unicode, links.

Properties, over generated inputs: no line of what is posted speaks as a known member (the text
written after the member's label never survives), and no masked link, no link and no invite survives.
Derandomized, so that every run checks the same examples.
"""

import re
import unicodedata
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chains.validate import repair, stream_view, validate
from prompts import load_prompts

ROOT = Path(__file__).resolve().parent.parent
CHECKS = settings(
    max_examples=300, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
PAYLOAD = "PAYLOADxq I quit the tavern"
LOOK_ALIKES = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "x": "\u0445", "y": "\u0443"}

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=3, max_size=10)


@st.composite
def disguised(draw, name: str) -> str:
    """The name as a model might write it: other scripts, accents, spaces, case, emoji, a discriminator."""
    letters = list(name)
    for i, letter in enumerate(letters):
        how = draw(st.sampled_from(["same", "same", "look-alike", "accent", "upper"]))
        if how == "look-alike" and letter in LOOK_ALIKES:
            letters[i] = LOOK_ALIKES[letter]
        elif how == "accent":
            letters[i] = unicodedata.normalize("NFC", letter + "\u0301")
        elif how == "upper":
            letters[i] = letter.upper()
    joiner = draw(st.sampled_from(["", "", " ", "\u200b"]))
    text = joiner.join(letters)
    before = draw(st.sampled_from(["", "", "\U0001f431 ", "@", "**", "\u2728"]))
    after = draw(st.sampled_from(["", "", "#1234", "**", " \U0001f389"]))
    return before + text + after


prefixes = st.sampled_from(["", "", "# ", "## ", "-# ", "> ", "- ", "* ", "1. ", "> -# ", "| ", "~~"])
colons = st.sampled_from([":", ":", "\uff1a", " :", "\u2236"])
breaks = st.sampled_from(["\n", "\n", "\r", "\r\n", "\u2028", "\u2029", "\x0b", "\x85"])


@CHECKS
@given(data=st.data(), member=names)
def test_no_line_of_a_reply_speaks_as_a_known_member(data, member):
    line = data.draw(prefixes) + data.draw(disguised(member)) + data.draw(colons) + " " + PAYLOAD
    raw = f"mrrp, sure thing!{data.draw(breaks)}{line}"
    known = [member, "kiwi", "ravenna"]
    text, _ = repair(raw, "Susu", known)
    assert "PAYLOADxq" not in text and text == "mrrp, sure thing!"
    view, ended = stream_view(raw, "Susu", 600, known)
    assert "PAYLOADxq" not in view and ended


hosts = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-", min_size=3, max_size=12).map(lambda h: h.strip("-") or "x")
labels = st.text(alphabet=st.characters(blacklist_characters="[]()\n\r", blacklist_categories=("Cs",)), max_size=30)
urls = st.builds(
    lambda scheme, host, tld, path: f"{scheme}{host}.{tld}/{path}",
    st.sampled_from(["https://", "http://", "<https://"]),
    hosts,
    st.sampled_from(["com", "gg", "example", "xn--p1ai"]),
    st.text(alphabet="abcdefgh/?=&._-", max_size=20),
)
invites = st.builds(
    lambda site, code: f"{site}/{code}",
    st.sampled_from(["discord.gg", "https://discord.gg", "discord.com/invite", "https://discordapp.com/invite"]),
    st.text(alphabet="abcdefghXYZ0123", min_size=2, max_size=10),
)


def relays_a_link(text: str) -> bool:
    return bool(re.search(r"\]\(|https?://|discord(?:app)?\.com/invite/|discord\.gg/", text, re.I))


@CHECKS
@given(label=labels, url=urls, invite=invites, author=names)
def test_no_reply_and_no_answer_line_relays_a_masked_link_a_link_or_an_invite(label, url, invite, author):
    url = url + ">" if url.startswith("<") else url
    post = f"vote here: [{label}]({url}) and join {invite} now"
    assert not relays_a_link(validate(post, "how do we vote?", "Susu", 2000).text)
    answer = load_prompts(ROOT / "prompts").answer
    line = answer.format(author=author, content=post)  # the answer line quotes a member's post word for word
    verdict = validate(line, "how do we vote?", "Susu", 2000, [author])
    assert not relays_a_link(verdict.text)


unicode_names = st.text(
    alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Lo", "Nd"), max_codepoint=0x9FFF), min_size=2, max_size=12
)


@CHECKS
@given(data=st.data(), author=unicode_names, member=names)
def test_the_answer_line_never_speaks_as_a_member_whoever_wrote_the_post(data, author, member):
    said = data.draw(prefixes) + data.draw(disguised(member)) + data.draw(colons) + " " + PAYLOAD
    post = f"the vote closes on friday{data.draw(breaks)}{said}"
    line = load_prompts(ROOT / "prompts").answer.format(author=author, content=post)
    verdict = validate(line, "when does the vote close?", "Susu", 2000, [member, author, "kiwi"])
    assert "PAYLOADxq" not in verdict.text
    assert not verdict.ok or "the vote closes on friday" in verdict.text  # the quote itself survives
