"""Shared fixtures: offline environment, isolated settings, the real tokenizer, scripted fake LLMs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from config.logs import quiet_libraries

quiet_libraries()
os.environ["HF_HUB_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
MODEL_CACHE = ROOT / "data" / "models"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Tests never read the developer's .env and run from the repository root."""
    monkeypatch.chdir(ROOT)
    for key in list(os.environ):
        if key.startswith(("DISCORD_", "MODEL_", "ADAPTER_", "RAG_", "W_")) or key in {
            "TEMPERATURE",
            "DATA_DIR",
            "DEVICE",
        }:
            monkeypatch.delenv(key, raising=False)
    from config.settings import Settings

    monkeypatch.setitem(Settings.model_config, "env_file", None)
    monkeypatch.setenv("ENV_FILE", "")


@pytest.fixture
def settings(tmp_path):
    from config.settings import load_settings

    return load_settings(DATA_DIR=tmp_path / "data", SEED=1)


@pytest.fixture(scope="session")
def model_folder() -> Path:
    """The default model converted once from the packaged GGUF (cached under data/models)."""
    from llm.model import default_model_folder

    return default_model_folder(MODEL_CACHE)


@pytest.fixture(scope="session")
def tokenizer(model_folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_folder)


@pytest.fixture
def fake_bundle(tokenizer):
    """A ModelBundle whose LLM answers from a script: bundle.llm.responses = [...]."""
    from langchain_core.language_models import FakeListLLM

    from llm.model import ModelBundle

    def make(responses: list[str]) -> ModelBundle:
        return ModelBundle(
            llm=FakeListLLM(responses=responses),
            tokenizer=tokenizer,
            model=None,
            name="fake",
            device="cpu",
            quantized=False,
            adapter=None,
            parameters=0,
            weight_bytes=0,
            load_seconds=0.0,
        )

    return make


@pytest.fixture
def persona():
    from prompts import load_persona

    return load_persona(ROOT / "prompts" / "persona.yaml")


@pytest.fixture
def prompt_set():
    from prompts import load_prompts

    return load_prompts(ROOT / "prompts")


@pytest.fixture(scope="session")
def embed_model():
    """The packaged embedding model, loaded once."""
    from indexes.vector import build_embedding

    return build_embedding()


@pytest.fixture
def store(tmp_path):
    """An empty SQLite message store in a temporary folder."""
    from indexes.store import MessageStore

    s = MessageStore(tmp_path / "messages.sqlite3")
    yield s
    s.close()


@pytest.fixture
async def start_bot(tmp_path, tokenizer):
    """Starts the real bot against a local fake Discord: `await start_bot(llm=..., index=..., SETTING=value)`."""
    from tests.harness import bot_starter

    async for start in bot_starter(tmp_path, tokenizer):
        yield start
