"""The composition root: reloading takes every setting it claims to, and names the ones that wait for a restart."""

from pathlib import Path

from app.cogs.admin import reread_settings
from app.runtime import build_runtime
from chains.types import ChatMessage
from config.settings import RESTART_SETTINGS, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_reload_builds_the_runtime_from_the_new_settings(tmp_path, fake_bundle, monkeypatch):
    settings = load_settings(DATA_DIR=tmp_path / "data", SEED=1)
    runtime = build_runtime(
        settings, model=fake_bundle(["first"]), with_index=True, model_factory=lambda s: fake_bundle(["second"])
    )
    for i in range(12):
        runtime.observe(1, ChatMessage("alice", f"message {i}", author_id=5, message_id=i + 1))
    changed = {
        "SHORT_TERM_WINDOW": "7",
        "SUMMARIZE_INTERVAL": "3",
        "LORE_KEYWORDS": "jar,cabinet",
        "INDEX_MIN_CHARS": "3",
        "IMPORT_SKIP_BOTS": "false",
        "COMMAND_PREFIXES": "%",
        "W_SIM": "0.5",
        "SEED": "9",
        "COMMAND_PREFIX": "?",
        "DATA_DIR": str(tmp_path / "elsewhere"),
    }
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


def test_serving_an_adapter_trained_with_other_prompt_files_warns(tmp_path, fake_bundle, caplog):
    import json
    import shutil

    from prompts import prompt_hashes

    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    adapter = tmp_path / "adapters" / "voice"
    adapter.mkdir(parents=True)
    meta = {"base_model": "smollm2-135m-instruct", "prompt_files": prompt_hashes(prompts, prompts / "persona.yaml")}
    (adapter / "training_meta.json").write_text(json.dumps(meta))
    settings = load_settings(
        DATA_DIR=tmp_path / "data", PROMPTS_DIR=prompts, PERSONA_FILE=prompts / "persona.yaml", ADAPTER_PATH=adapter
    )

    runtime = build_runtime(settings, model=fake_bundle(["hi"]), with_index=False)
    assert "trained with other prompt files" not in caplog.text  # the files it was trained with
    system = prompts / "system.txt"
    system.write_text(system.read_text().replace("Stay in character", "Always stay in character"))
    runtime.reload_prompts()
    assert "trained with other prompt files" in caplog.text and "changed: system.txt" in caplog.text
    runtime.close()
    caplog.clear()
    build_runtime(
        settings.model_copy(update={"PERSONA_FILE": ROOT / "evals" / "datasets" / "nextgen_persona.yaml"}),
        model=fake_bundle(["hi"]),
        with_index=False,
    ).close()
    assert "(changed: persona, system.txt)" in caplog.text
