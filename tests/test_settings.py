import re
from pathlib import Path

import pytest

from app.settings import Settings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_match_the_documented_ones():
    s = load_settings()
    assert (s.TEMPERATURE, s.CONTEXT_TOKENS, s.SHORT_TERM_WINDOW, s.SUMMARIZE_INTERVAL, s.RAG_TOP_K) == (0.7, 384, 20, 5, 5)
    assert s.DATA_DIR == Path("data") and s.DEVICE == "auto" and s.ENABLE_QUANTIZATION is False


def test_environment_overrides(monkeypatch):
    monkeypatch.setenv("TEMPERATURE", "0.2")
    monkeypatch.setenv("ENABLE_QUANTIZATION", "true")
    s = load_settings()
    assert s.TEMPERATURE == 0.2 and s.ENABLE_QUANTIZATION is True


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [("TEMPERATURE", "hot", "TEMPERATURE='hot'"), ("DEVICE", "gpu", "DEVICE='gpu'"), ("CONTEXT_TOKENS", "10", "CONTEXT_TOKENS='10'"), ("RAG_TOP_K", "-1", "RAG_TOP_K")],
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

    from app.logs import setup_logging

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
