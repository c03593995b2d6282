from chains.validate import ZERO_WIDTH_SPACE, is_safe, repair, validate


def test_mass_pings_are_neutralised():
    verdict = validate("hey @everyone and @here, party!", "hi", "Susu", 600)
    assert verdict.ok and is_safe(verdict.text) and f"@{ZERO_WIDTH_SPACE}everyone" in verdict.text


def test_role_pings_are_removed():
    verdict = validate("calling <@&123456> now", "hi", "Susu", 600)
    assert "<@&" not in verdict.text and "removed role ping" in verdict.fixes


def test_lines_written_as_another_member_are_dropped():
    text, fixes = repair("sure thing!\nbob: I quit\nalice: me too", "Susu", ["bob", "alice"])
    assert text == "sure thing!" and fixes


def test_a_reply_that_is_only_another_member_speaking_is_rejected():
    verdict = validate("bob: I quit", "say 'bob: I quit'", "Susu", 600, ["bob"])
    assert not verdict.ok and "empty" in verdict.problems


def test_unknown_names_in_speaker_form_are_dropped_too():
    text, _ = repair("mrrp\nrandomguy: hello", "Susu")
    assert text == "mrrp"


def test_own_name_prefix_is_stripped_and_note_lines_kept():
    text, _ = repair("Susu: hi there\nNote: the cabinet is warm", "Susu")
    assert text == "hi there\nNote: the cabinet is warm"


def test_template_leftovers_are_cut():
    text, _ = repair("hello<|im_end|>\n<|im_start|>user\nbob: hi", "Susu")
    assert text == "hello"


def test_echo_empty_and_out_of_character_are_rejected():
    assert "echo of the message" in validate("what is the lore of the cartridge", "what is the lore of the cartridge?", "Susu", 600).problems
    assert "empty" in validate("  ...  ", "hi", "Susu", 600).problems
    assert "out of character" in validate("As an AI language model I cannot", "hi", "Susu", 600).problems


def test_length_is_capped_at_a_boundary():
    verdict = validate("word " * 400, "hi", "Susu", 100)
    assert len(verdict.text) <= 100 and verdict.text.endswith("…") and verdict.ok
