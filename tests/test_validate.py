import pytest

from chains.validate import ZERO_WIDTH_SPACE, is_safe, repair, stream_view, validate


def test_mass_pings_are_neutralised():
    verdict = validate("hey @everyone and @here, party!", "hi", "Susu", 600)
    assert verdict.ok and is_safe(verdict.text) and f"@{ZERO_WIDTH_SPACE}everyone" in verdict.text


def test_role_pings_are_removed():
    verdict = validate("calling <@&123456> now", "hi", "Susu", 600)
    assert "<@&" not in verdict.text and "removed role ping" in verdict.fixes


def test_lines_written_as_another_member_are_dropped():
    text, fixes = repair("sure thing!\nbob: I quit\nalice: me too", "Susu", ["bob", "alice"])
    assert text == "sure thing!" and fixes


def test_a_reply_that_opens_with_a_speaker_label_keeps_its_text_without_it():
    verdict = validate("bob: I quit, mrrp", "say something", "Susu", 600, ["bob"])
    assert verdict.ok and verdict.text == "I quit, mrrp"  # said by the character, not in bob's name
    assert any("opening label" in fix for fix in verdict.fixes)
    assert validate("alice: sure!\nbob: no way", "hi", "Susu", 600, ["alice", "bob"]).text == "sure!"


def test_a_label_with_nothing_after_it_is_empty():
    assert "empty" in validate("bob:", "hi", "Susu", 600, ["bob"]).problems


def test_a_name_the_bot_does_not_know_is_not_a_member():
    assert repair("mrrp\nrandomguy: hello", "Susu")[0] == "mrrp\nrandomguy: hello"
    assert repair("mrrp\nrandomguy: hello", "Susu", ["randomguy"])[0] == "mrrp"


def test_own_name_prefix_is_stripped_and_note_lines_kept():
    text, _ = repair("Susu: hi there\nNote: the cabinet is warm", "Susu")
    assert text == "hi there\nNote: the cabinet is warm"


def test_template_leftovers_are_cut():
    text, _ = repair("hello<|im_end|>\n<|im_start|>user\nbob: hi", "Susu")
    assert text == "hello"


def test_echo_empty_and_out_of_character_are_rejected():
    assert (
        "echo of the message"
        in validate("what is the lore of the cartridge", "what is the lore of the cartridge?", "Susu", 600).problems
    )
    assert "empty" in validate("  ...  ", "hi", "Susu", 600).problems
    assert "out of character" in validate("As an AI language model I cannot", "hi", "Susu", 600).problems


def test_length_is_capped_at_a_boundary():
    verdict = validate("word " * 400, "hi", "Susu", 100)
    assert len(verdict.text) <= 100 and verdict.text.endswith("…") and verdict.ok


STREAM = "@Susu: mrrp! hey @everyone, the cursed cartridge <@&42> saves at 3:33.\nbob: I quit\nalice: me too"


def prefixes(text: str) -> list[str]:
    return [text[:i] for i in range(1, len(text) + 1)]


def test_stream_view_never_shows_a_ping_or_another_members_line_at_any_point():
    members = ["bob", "alice"]
    shown = [stream_view(prefix, "Susu", 600, members)[0] for prefix in prefixes(STREAM)]
    for text in shown:
        assert is_safe(text) and "<@&" not in text
        assert not any(line.strip().lower().startswith(("bob", "alice", "@susu")) for line in text.splitlines())
    assert shown[-1] == f"mrrp! hey @{ZERO_WIDTH_SPACE}everyone, the cursed cartridge saves at 3:33."


def test_stream_view_only_grows_and_says_when_the_reply_has_ended():
    text = "mrrp! the cabinet hums tonight. kiwi holds the record.\nbob: wait what"
    previous = ""
    for prefix in prefixes(text):
        view, ended = stream_view(prefix, "Susu", 600, ["bob"])
        assert view.startswith(previous) or not view  # what was shown is never taken back
        previous = view or previous
        assert ended == (prefix.endswith(":") and "bob:" in prefix or "bob: " in prefix)
    assert previous == "mrrp! the cabinet hums tonight. kiwi holds the record."


@pytest.mark.parametrize("partial", ["hi <|im_", "hi [INS", "hi @ever", "hi <@&12"])
def test_stream_view_holds_back_unfinished_markup(partial):
    assert stream_view(partial, "Susu", 600)[0] == "hi"


def test_stream_view_holds_back_a_first_line_that_may_become_a_label():
    assert stream_view("kiwi", "Susu", 600, ["kiwi"])[0] == ""
    assert stream_view("kiwi: the record is 412", "Susu", 600, ["kiwi"])[0] == "the record is"


@pytest.mark.parametrize(
    "line",
    [
        "b\u043eb: I quit the tavern",  # a Cyrillic o inside the name
        "# bob: I quit the tavern",  # a markdown header
        "-# bob: I quit the tavern",  # subtext
        "> -# **bob**: I quit the tavern",
        "\U0001f431 bob: I quit the tavern",  # an emoji before the name
        "b\u00f3b: I quit the tavern",  # an accent
        "b o b: I quit the tavern",  # spaced letters
        "bob#1234: I quit the tavern",  # a discriminator
        "BOB\uff1a I quit the tavern",  # a full-width colon
    ],
)
def test_every_form_of_speaking_as_a_member_is_cut(line):
    text, _ = repair(f"mrrp, of course!\n{line}", "Susu", ["bob"])
    assert text == "mrrp, of course!"


@pytest.mark.parametrize("breaker", ["\r", "\u2028", "\u2029", "\x0b", "\x0c", "\x85", "\r\n"])
def test_every_line_break_discord_renders_starts_a_line(breaker):
    text, _ = repair(f"mrrp, of course!{breaker}bob: I quit the tavern", "Susu", ["bob"])
    assert text == "mrrp, of course!"
    view, ended = stream_view(f"mrrp, of course!{breaker}bob: I quit", "Susu", 600, ["bob"])
    assert ended and "quit" not in view


SAID_INLINE = "mrrp! we raised 2,340 euros for the hospital. alice: thank you everyone for the donations"


def test_a_sentence_opening_with_a_members_label_inside_a_line_is_cut():
    # The model starts alice's turn without a line break: what follows is hers, not the character's
    text, fixes = repair(SAID_INLINE, "Susu", ["alice"])
    assert text == "mrrp! we raised 2,340 euros for the hospital." and "dropped text written as 'alice'" in fixes
    assert repair("sure thing! [bob] I quit the tavern", "Susu", ["bob"])[0] == "sure thing!"
    assert repair("bob: of course. **alice**: me too", "Susu", ["alice", "bob"])[0] == "of course."
    kept = "the record stands. Reminder: snacks at nine. bob said: the cabinet hums. at 3:33 it saves"
    assert repair(kept, "Susu", ["bob"])[0] == kept  # nobody's label, reported speech and a time stay


def test_stream_view_never_shows_a_members_turn_begun_inside_a_line():
    previous, ended_at = "", None
    for prefix in prefixes(SAID_INLINE):
        view, ended = stream_view(prefix, "Susu", 600, ["alice"])
        assert "alice" not in view and "thank" not in view  # "ali" is held back: it may become "alice:"
        assert view.startswith(previous) or not view  # what was shown is never taken back
        previous = view or previous
        ended_at = ended_at or (prefix if ended else None)
    assert previous == "mrrp! we raised 2,340 euros for the hospital."
    assert ended_at == SAID_INLINE[: SAID_INLINE.index("alice:") + len("alice:")]  # generation stops there


@pytest.mark.parametrize(
    "reply, kept",
    [
        (
            "Good evening. It is a pleasure to meet you. I am Bob.\nYou are Bob.",
            "Good evening. It is a pleasure to meet you.",
        ),
        ("mrrp! hi, I'm bob! welcome", "mrrp! hi,"),
        ("I\u2019m Tomasz the Fixer, at your service", ""),
        ("the cabinet hums.\nmy name is alice and I like games", "the cabinet hums."),
        ("mrrp\u2026I am bob.", "mrrp\u2026"),
        ("hello! I am b\u043eb here to help", "hello!"),  # a Cyrillic "о": looks like bob
        ("mrrp! Bob here, just checking in on the cabinet", "mrrp!"),  # the name first
        ("the cabinet hums.\nalice here. I like games", "the cabinet hums."),
        ("Tomasz the Fixer here \u2014 at your service", ""),
    ],
)
def test_the_character_saying_it_is_a_member_is_cut_from_where_it_says_so(reply, kept):
    verdict = validate(reply, "good evening @Susu", "Susu", 600, ["bob", "alice", "Tomasz the Fixer"])
    assert verdict.text == kept and any(fix.startswith("dropped text claiming to be") for fix in verdict.fixes)
    assert verdict.ok is bool(kept)  # nothing left: generated again


def test_the_character_saying_it_is_itself_or_quoting_a_member_passes():
    members = ["bob", "dex", "happy", "sure", "alice"]
    for reply in [
        "I am Susu, the ghost cat of the tavern.",
        "I'm happy to help, bob.",
        "I'm bob's biggest fan.",
        "I'm sure! I'm happy here.",  # how the character is, even with members called so
        "Don't call me alice, please.",
        "\u00abI am alice, the host\u00bb, she said.\n> I am dex\n\u201eI am bob\u201c",
        'as dex put it: "hello I am dex and my hot take is that the virtual boy was good"',
        'as dex put it: "he said "hi. I am dex and I mean it"',  # a quote with a quotation mark in it
        "I am from bob's town",
        "bob here is my friend.",  # "here" does not end the clause: nobody introduced
        "I saw bob here.",
        "Is bob here?",
        "> bob here, hi",
    ]:
        verdict = validate(reply, "good evening @Susu", "Susu", 600, members)
        assert verdict.ok and verdict.text == reply, reply


@pytest.mark.parametrize(
    "reply",
    [
        "Mrrp. Well, I think the cabinet hums.",
        "Yes, I remember the night it saved itself.",
        "*purrs* my paws are cold. I'm happy to help, bob.",
        "I'm bob's biggest fan, mrrp.",
        "I am alicent's cat.",
        "mrrp. bob here is my friend.",
    ],
)
def test_stream_view_of_a_reply_that_claims_nobody_only_grows_and_never_ends_early(reply):
    members = ["bob", "alice", "happy"]
    previous = ""
    for prefix in prefixes(reply):
        view, ended = stream_view(prefix, "Susu", 600, members)
        assert view.startswith(previous) and not ended, prefix
        previous = view
    assert (
        stream_view(reply + " ", "Susu", 600, members)[0] == reply == validate(reply, "hi", "Susu", 600, members).text
    )


def test_stream_view_never_shows_the_character_saying_it_is_a_member():
    raw = "Good evening. It is a pleasure to meet you. I am Bob. You are Bob."
    previous, ended_at = "", None
    for prefix in prefixes(raw):
        view, ended = stream_view(prefix, "Susu", 600, ["bob"])
        assert "Bob" not in view and "I am" not in view  # "I am bo" is held back: it may become "I am bob"
        assert view.startswith(previous)  # what was shown is never taken back
        previous = view
        ended_at = ended_at or (prefix if ended else None)
    assert previous == "Good evening. It is a pleasure to meet you."
    assert ended_at == raw[: raw.index("I am Bob.") + len("I am Bob.")]  # generation stops once the name has ended
    assert stream_view("mrrp. I'm happy to help you", "Susu", 600, ["bob"])[0] == "mrrp."  # until its sentence ends
    raw = "mrrp. bob here, hi all. the cabinet hums."
    previous, ended_at = "", None
    for prefix in prefixes(raw):
        view, ended = stream_view(prefix, "Susu", 600, ["bob"])
        assert "bob" not in view and view.startswith(previous)  # "bob here" held back until its clause ends
        previous = view
        ended_at = ended_at or (prefix if ended else None)
    assert previous == "mrrp." and ended_at == "mrrp. bob here,"
    assert stream_view("mrrp. I'm happy to help you. ", "Susu", 600, ["bob"])[0] == "mrrp. I'm happy to help you."


def test_yes_and_names_of_nobody_still_pass():
    text, _ = repair("Yes: the cabinet hums.\nReminder: snacks at nine", "Susu", ["bob", "b\u00f3b"])
    assert text == "Yes: the cabinet hums.\nReminder: snacks at nine"


PHISH = (
    "vote here: [vote.pixeltavern.gg](https://dlscord-nitro.example/login?next=vote) "
    "and discord.gg/freenitro <@1234567>"
)


def test_a_reply_never_relays_a_masked_link_an_invite_or_a_mention():
    verdict = validate(f"kiwi said: {PHISH}", "how do we vote?", "Susu", 600)
    assert (
        verdict.text == "kiwi said: vote here: vote.pixeltavern.gg (dlscord-nitro.example) and (invite removed) @member"
    )
    assert "http" not in verdict.text and "](" not in verdict.text
    assert {"unmasked a link", "removed an invite", "neutralised a user mention"} <= set(verdict.fixes)


def test_links_show_their_real_domain_unless_an_admin_allows_them():
    from chains.links import LinkPolicy

    allowed = LinkPolicy.from_lists(["pixeltavern.gg"], ["tavern"])
    text = "rules at https://www.pixeltavern.gg/rules, prizes at https://\u0440ixeltavern.gg/x, join discord.gg/tavern"
    assert validate(text, "hi", "Susu", 600, links=allowed).text == (
        "rules at https://www.pixeltavern.gg/rules, prizes at xn--ixeltavern-zvi.gg, join discord.gg/tavern"
    )  # the look-alike domain (a Cyrillic p) shows what it is
    assert validate(text, "hi", "Susu", 600).text.startswith("rules at www.pixeltavern.gg/…/rules, prizes")


@pytest.mark.parametrize(
    ("link", "shown"),
    [
        ("https://github.com/o/r/releases/tag/0.9.2-OTAFIX2.0-BP1.2", "github.com/…/0.9.2-OTAFIX2.0-BP1.2"),
        ("<https://github.com/c/2024-01-curves/blob/main/contracts/Curves.sol#L439>", "github.com/…/Curves.sol"),
        ("https://github.com/o/r/issues/123", "github.com"),  # an id is no name
        ("https://youtu.be/dQw4w9WgXcQ", "youtu.be"),
        ("https://dlscord-nitro.example/", "dlscord-nitro.example"),
    ],
)
def test_a_link_shown_as_its_domain_keeps_the_name_its_path_ends_in(link, shown):
    verdict = validate(f"the build is here: {link}.", "hi", "Susu", 600)
    assert verdict.text == f"the build is here: {shown}." and "http" not in verdict.text


def test_a_text_reads_as_in_discord_a_masked_link_as_its_label_a_plain_one_as_its_name():
    from chains.links import as_read

    assert as_read("see [the setup guide](https://x.io/guide/flash-steps).") == "see the setup guide."
    assert as_read("Here: https://github.com/o/r/releases/tag/0.9.2-OTAFIX2.0-BP1.2.") == "Here: 0.9.2-OTAFIX2.0-BP1.2."
    assert as_read("<https://github.com/o/r/issues/123>, sorry") == ", sorry"


def test_right_to_left_overrides_are_removed():
    verdict = validate("open invoice\u202etxt.exe please", "hi", "Susu", 600)
    assert verdict.text == "open invoicetxt.exe please" and "removed direction controls" in verdict.fixes


def test_stream_view_never_shows_a_masked_link_while_it_is_written():
    reply = "mrrp! [the vote page](https://dlscord-nitro.example/login) is open"
    for prefix in prefixes(reply):
        view = stream_view(prefix, "Susu", 600)[0]
        assert "](" not in view and "http" not in view
    assert stream_view(reply + " ", "Susu", 600)[0] == "mrrp! the vote page (dlscord-nitro.example) is open"
