import os
import re
from pathlib import Path

import pytest

from config.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_documented_ones():
    s = load_settings()
    assert (s.TEMPERATURE, s.CONTEXT_TOKENS, s.SHORT_TERM_WINDOW, s.SUMMARIZE_INTERVAL, s.RAG_TOP_K) == (
        0.7,
        384,
        20,
        5,
        5,
    )
    assert s.DATA_DIR == Path("data") and s.DEVICE == "auto" and s.ENABLE_QUANTIZATION is False


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("TEMPERATURE", "0.2")
    monkeypatch.setenv("ENABLE_QUANTIZATION", "true")
    s = load_settings()
    assert s.TEMPERATURE == 0.2 and s.ENABLE_QUANTIZATION is True


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("TEMPERATURE", "hot", "TEMPERATURE='hot'"),
        ("DEVICE", "gpu", "DEVICE='gpu'"),
        ("CONTEXT_TOKENS", "10", "CONTEXT_TOKENS='10'"),
        ("RAG_TOP_K", "-1", "RAG_TOP_K"),
    ],
)
def test_bad_value_names_the_variable_and_what_is_allowed(monkeypatch, name, value, expected):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert expected in str(err.value)
    if name == "DEVICE":
        assert "'auto', 'cpu' or 'cuda'" in str(err.value)


def test_inconsistent_combination_is_refused():
    with pytest.raises(SettingsError, match="MAX_NEW_TOKENS must be smaller than CONTEXT_TOKENS"):
        load_settings(MAX_NEW_TOKENS=400, CONTEXT_TOKENS=384)


def test_token_is_secret():
    s = load_settings(DISCORD_BOT_TOKEN="abc.def.ghi")
    assert "abc.def.ghi" not in repr(s) and s.DISCORD_BOT_TOKEN.get_secret_value() == "abc.def.ghi"


def test_env_example_documents_every_setting():
    text = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", text, flags=re.M))
    assert set(Settings.model_fields) <= documented, set(Settings.model_fields) - documented


def test_secrets_are_redacted_from_every_log_line(tmp_path):
    import logging

    from config.logs import setup_logging

    token = "MTA5.secret-token.value"
    setup_logging("INFO", tmp_path / "bot.log", secrets=[token])
    try:
        log = logging.getLogger("redaction-test")
        log.info("connecting with %s", token)
        try:
            raise RuntimeError(f"bad header Authorization: Bot {token}")
        except RuntimeError:
            log.exception("request failed")
        for handler in logging.getLogger().handlers:
            handler.flush()
        written = (tmp_path / "bot.log").read_text()
        assert token not in written and written.count("[redacted]") >= 2 and "request failed" in written
    finally:
        setup_logging("INFO")


def test_off_the_screen_log_lines_and_warnings_go_to_the_file_and_errors_show_too(tmp_path, capsys):
    import logging

    from config.logs import setup_logging

    setup_logging("INFO", tmp_path / "chat.log", to_stderr=False)
    try:
        log = logging.getLogger("console-test")
        log.info("context over budget: cut 3 messages")
        log.warning("reply did not use the lore")
        # as bitsandbytes says it on every CPU start (its logger; Python warnings are logged the same way)
        logging.getLogger("bitsandbytes.backends.cpu.ops").warning("Failed to load CPU gemm_4bit_forward from kernels")
        log.error("generation failed; using the fallback line")
        for handler in logging.getLogger().handlers:
            handler.flush()
        written = (tmp_path / "chat.log").read_text()
        assert all(
            line in written for line in ("over budget", "did not use the lore", "gemm_4bit", "generation failed")
        )
        screen = capsys.readouterr().err
        assert "generation failed" in screen and "over budget" not in screen and "gemm_4bit" not in screen
        (tmp_path / "readonly").write_text("a file where the log folder should be")
        setup_logging("INFO", tmp_path / "readonly" / "chat.log", to_stderr=False)  # cannot be written
        log.info("still logged somewhere")
        screen = capsys.readouterr().err
        assert "cannot write the log file" in screen and "still logged somewhere" in screen
    finally:
        setup_logging("INFO")


def test_logging_quiets_transformers_without_importing_it():
    """A command that loads no model starts without transformers (seconds), which is quiet once a model loads."""
    import logging
    import subprocess
    import sys

    probe = (
        "import sys; from config.logs import setup_logging; setup_logging('INFO'); "
        "print('transformers' in sys.modules); "
        "from transformers.utils import logging as hf; print(hf.get_verbosity(), hf.is_progress_bar_enabled())"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", str(logging.ERROR), "False"]


def test_child_processes_get_the_settings_but_never_the_secrets(tmp_path, monkeypatch):
    import subprocess
    import sys

    from config.settings import child_environment

    (tmp_path / ".env").write_text("DISCORD_BOT_TOKEN=secret-token-from-dotenv\nOPENAI_API_KEY=sk-from-dotenv\n")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "secret-token-in-the-environment")
    settings = load_settings(DATA_DIR=tmp_path / "data", OPENAI_API_KEY="sk-in-settings", LORE_KEYWORDS="jar,cabinet")
    env = child_environment(settings)
    assert "DISCORD_BOT_TOKEN" not in env and "OPENAI_API_KEY" not in env
    assert not any("secret-token" in v or "sk-in" in v for v in env.values())
    probe = (
        "from config.settings import load_settings; s = load_settings(); "
        "print(s.DISCORD_BOT_TOKEN, s.OPENAI_API_KEY, s.DATA_DIR, s.LORE_KEYWORDS)"
    )
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "None", str(tmp_path / "data"), "('jar',", "'cabinet')"]  # not even from .env


def test_children_get_no_hub_token_and_urls_lose_their_credentials(tmp_path, monkeypatch, caplog):
    import logging

    from config.logs import RedactSecrets
    from config.settings import child_environment, secrets_of

    monkeypatch.setenv("HF_TOKEN", "hf_secret_hub_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = load_settings(DATA_DIR=tmp_path / "data", OPENAI_BASE_URL="http://bot:pw@10.0.0.5:8000/v1")
    env = child_environment(settings)
    assert "HF_TOKEN" not in env and env["HF_HUB_OFFLINE"] == "1"  # what the child needs, not the secret
    assert env["OPENAI_BASE_URL"] == "http://10.0.0.5:8000/v1"
    assert not any("pw@" in value or "hf_secret" in value for value in env.values())
    assert "pw" in secrets_of(settings)
    record = logging.LogRecord(
        "x", logging.WARNING, "f", 1, "server %s is down", ("http://bot:pw@10.0.0.5:8000/v1",), None
    )
    RedactSecrets(secrets_of(settings)).filter(record)
    assert record.getMessage() == "server http://[redacted]@10.0.0.5:8000/v1 is down"  # short passwords too


def test_a_hub_mirror_with_credentials_reaches_children_without_them_and_logs_hide_a_lone_token(tmp_path, monkeypatch):
    import logging

    from config.logs import RedactSecrets
    from config.settings import child_environment

    monkeypatch.setenv("HF_ENDPOINT", "https://mirror-user:mirror-pass@hub.example.org/api")
    monkeypatch.setenv("HF_HUB_CACHE", "/tmp/hub://odd")
    env = child_environment(load_settings(DATA_DIR=tmp_path / "data"))
    assert env["HF_ENDPOINT"] == "https://hub.example.org/api"  # the mirror is kept, its password is not
    assert env["HF_HUB_CACHE"] == "/tmp/hub://odd"  # a value without credentials is left as it is
    record = logging.LogRecord("x", logging.WARNING, "f", 1, "cloning %s", ("https://ghp_abc@github.com/o/r",), None)
    RedactSecrets([]).filter(record)
    assert record.getMessage() == "cloning https://[redacted]@github.com/o/r"  # a token as the user name, no password


def test_every_command_redacts_the_secrets_in_its_logs(monkeypatch, capsys, tmp_path):
    import logging

    from app import __main__ as cli
    from app import history

    monkeypatch.setenv("DISCORD_BOT_TOKEN", "the-bot-token-1234567890")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))

    def chatty_backfill(settings):
        logging.getLogger("app.backfill").warning(
            "Discord said no to token %s", settings.DISCORD_BOT_TOKEN.get_secret_value()
        )
        return 0

    monkeypatch.setattr(history, "backfill", chatty_backfill)
    handlers, level = list(logging.root.handlers), logging.root.level
    try:
        assert cli.main(["backfill"]) == 0
    finally:  # the command set up logging on this test's captured stderr: put the suite's back
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)
    err = capsys.readouterr().err
    assert "Discord said no to token [redacted]" in err and "the-bot-token-1234567890" not in err


def test_the_default_embedding_model_is_the_packaged_one_and_a_blank_one_is_refused(monkeypatch):
    from indexes.vector import DEFAULT_EMBEDDER

    assert load_settings().EMBED_MODEL == DEFAULT_EMBEDDER
    monkeypatch.setenv("EMBED_MODEL", " ")
    with pytest.raises(SettingsError, match="EMBED_MODEL"):
        load_settings()
