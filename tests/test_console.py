import io

from app.console import CONSOLE_CHANNEL_ID, Console, mentions, parse_line
from app.runtime import build_runtime
from chains.types import ChatMessage


def test_parse_line():
    assert parse_line("alice: hi there", "you") == parse_line("  alice:hi there ", "x")
    assert parse_line("just text", "bob").author == "bob"
    assert parse_line("https://example.org", "bob").author == "bob"


def test_mentions():
    assert mentions("hey @susu!", "Susu") and not mentions("hey susu", "Susu") and not mentions("@Susuwatari", "Susu")


def test_console_session_speakers_memory_and_commands(settings, fake_bundle):
    runtime = build_runtime(settings, model=fake_bundle(["mrrp, hello alice", "hi bob!"]), with_index=False)
    out = io.StringIO()
    console = Console(runtime, out=out)
    script = "alice: hi everyone\nalice: @Susu hello\n/as bob\nyo @Susu\n/explain\n/clear\n/quit\nnever read\n"
    console.loop(io.StringIO(script))
    text = out.getvalue()
    assert "Susu: mrrp, hello alice" in text and "Susu: hi bob!" in text
    assert "(speaking as bob)" in text and "(short-term memory cleared)" in text
    assert runtime.memory.snapshot(CONSOLE_CHANNEL_ID).messages == ()
    assert text.count("Susu:") == 3  # greeting + two replies: the unmentioned message got none
    runtime.close()


def test_reply_is_remembered_as_the_character(settings, fake_bundle):
    runtime = build_runtime(settings, model=fake_bundle(["first answer", "second"]), with_index=False)
    console = Console(runtime, out=io.StringIO())
    console.say("alice", "@Susu one")
    remembered = runtime.memory.snapshot(CONSOLE_CHANNEL_ID).messages
    assert [(m.author, m.from_character) for m in remembered] == [("alice", False), ("Susu", True)]
    result = runtime.reply(CONSOLE_CHANNEL_ID, ChatMessage("bob", "@Susu two", message_id=99))
    assert "assistant\nfirst answer" in result.assembled.prompt
    runtime.close()


def test_editing_a_prompt_file_changes_the_next_reply_without_code(settings, fake_bundle, tmp_path):
    import shutil

    prompts = tmp_path / "prompts"
    shutil.copytree("prompts", prompts)
    settings = settings.model_copy(update={"PROMPTS_DIR": prompts, "PERSONA_FILE": prompts / "persona.yaml"})
    runtime = build_runtime(settings, model=fake_bundle(["a", "b"]), with_index=False)
    first = runtime.reply(1, ChatMessage("alice", "@Susu hi"))
    assert "Speak like a pirate." not in first.assembled.prompt
    system = prompts / "system.txt"
    system.write_text(system.read_text() + "\nSpeak like a pirate.\n")
    (prompts / "persona.yaml").write_text(
        (prompts / "persona.yaml").read_text().replace("name: Susu", "name: Captain Susu")
    )
    runtime.reload_prompts()
    second = runtime.reply(1, ChatMessage("alice", "@Susu hi"))
    assert "Speak like a pirate." in second.assembled.prompt and "You are Captain Susu" in second.assembled.prompt
    runtime.close()
