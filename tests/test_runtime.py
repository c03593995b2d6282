"""The composition root: reloading takes every setting it claims to, and names the ones that wait for a restart."""

from app.cogs.admin import reread_settings
from app.runtime import build_runtime
from app.settings import RESTART_SETTINGS, load_settings
from chains.types import ChatMessage


def test_reload_builds_the_runtime_from_the_new_settings(tmp_path, fake_bundle, monkeypatch):
    settings = load_settings(DATA_DIR=tmp_path / "data", SEED=1)
    runtime = build_runtime(
        settings, model=fake_bundle(["first"]), with_index=True, model_factory=lambda s: fake_bundle(["second"])
    )
    for i in range(12):
        runtime.observe(1, ChatMessage("alice", f"message {i}", author_id=5, message_id=i + 1))
    changed = {
        "SHORT_TERM_WINDOW": "7", "SUMMARIZE_INTERVAL": "3", "LORE_KEYWORDS": "jar,cabinet", "INDEX_MIN_CHARS": "3",
        "IMPORT_SKIP_BOTS": "false", "COMMAND_PREFIXES": "%", "W_SIM": "0.5", "SEED": "9", "COMMAND_PREFIX": "?",
        "DATA_DIR": str(tmp_path / "elsewhere"),
    }  # fmt: skip
    for name, value in changed.items():
        monkeypatch.setenv(name, value)
    fresh, waiting = reread_settings(runtime.settings)
    assert set(waiting) == {"COMMAND_PREFIX", "DATA_DIR"} and set(waiting) <= set(RESTART_SETTINGS)
    assert fresh.DATA_DIR == settings.DATA_DIR and fresh.COMMAND_PREFIX == "!"  # kept until a restart
    runtime.reload(fresh)
    assert runtime.memory.window == 7 and runtime.memory.interval == 3
    assert [m.content for m in runtime.memory.snapshot(1).messages] == [
        f"message {i}" for i in range(5, 12)
    ]  # kept, resized
    assert runtime.ingestion.keywords == ("jar", "cabinet") and runtime.ingestion.filters.skip_bots is False
    assert runtime.ingestion.filters.command_prefixes == ("%",) and runtime.lore_index.min_chars == 3
    assert runtime.settings.W_SIM == 0.5 and runtime.settings.SEED == 9
    assert runtime.reply(1, ChatMessage("bob", "@Susu hi", message_id=99)).text == "second"  # the new model answers
    runtime.close()
