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
