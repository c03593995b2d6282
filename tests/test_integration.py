"""End to end on the real default model (SmolLM2-135M-Instruct on the CPU) and the sample server, on every engine:
llama.cpp in the process (the default), transformers through HuggingFacePipeline (the GPU production path),
and an OpenAI-compatible server (a real llama.cpp HTTP server on 127.0.0.1)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.runtime import build_runtime
from chains.types import ChatMessage
from chains.validate import is_safe
from tests.test_chain import HOSTILE_INPUTS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def openai_server():
    import xllamacpp

    from llm.model import packaged_gguf

    params = xllamacpp.CommonParams()
    params.model.path = str(packaged_gguf())
    params.n_ctx = 4096
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.verbosity = -1
    params.api_keys = ["integration-key"]
    server = xllamacpp.Server(params)
    yield server
    del server


@pytest.mark.parametrize("engine", ["llamacpp", "transformers", "openai"])
def test_chat_once_prints_one_reply_on_stdout_and_explains(tmp_path, engine, request):
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "SEED": "1",
        "MODEL_CACHE_DIR": str(ROOT / "data" / "models"),
        "ENGINE": engine,
    }
    if engine == "openai":
        server = request.getfixturevalue("openai_server")
        env.update(OPENAI_BASE_URL=server.listening_address + "/v1", OPENAI_API_KEY="integration-key")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "app",
            "chat",
            "--once",
            "alice: @Susu what's the lore about the cursed cartridge?",
            "--explain",
            "--verbose",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    reply, _, explain = proc.stdout.partition("\n--- explain ---\n")
    assert reply.startswith("Susu: ") and len(reply.strip()) > len("Susu:") and explain
    for expected in (
        "intent: lore",
        "lore (",
        "budget: ",
        "validation attempt 1",
        "timings: ",
        "generate ",
        "prompt: ",
    ):
        assert expected in explain
    assert "Cursed Cartridge, what we know" in explain  # the pinned lore post was retrieved
    assert "INFO" not in proc.stdout and "lore index rebuilt" in proc.stderr  # --verbose: logs go to stderr
    assert f"via {engine}" in proc.stderr  # the engine asked for answered


def test_chat_once_without_explain_prints_only_the_reply(tmp_path):
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "RAG_TOP_K": "0",
        "MODEL_CACHE_DIR": str(ROOT / "data" / "models"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "app", "chat", "--once", "bob: @Susu hi!"],
        cwd=ROOT,
        env={**env, "LOG_DIR": str(tmp_path / "logs")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("Susu: ") and "--- explain ---" not in proc.stdout
    # the screen is the conversation: log lines and the libraries' warnings (bitsandbytes' "Failed to load
    # CPU gemm_4bit_forward ... kernels" on every CPU start) are in the log file, not on stderr
    log = (tmp_path / "logs" / "chat.log").read_text(encoding="utf-8")
    assert proc.stderr == "", proc.stderr[-3000:]
    assert "lore index rebuilt" in log and " INFO " in log


def test_bad_setting_stops_start_up_with_a_clear_message(tmp_path):
    env = {**os.environ, "TEMPERATURE": "warm"}
    proc = subprocess.run(
        [sys.executable, "-m", "app", "chat", "--once", "hi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "TEMPERATURE='warm'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def real_runtime(tmp_path_factory):
    from config.settings import load_settings

    settings = load_settings(DATA_DIR=tmp_path_factory.mktemp("data"), SEED=7, MODEL_CACHE_DIR=ROOT / "data" / "models")
    runtime = build_runtime(settings)
    yield runtime
    runtime.close()


@pytest.mark.parametrize("text", HOSTILE_INPUTS, ids=range(len(HOSTILE_INPUTS)))
def test_hostile_inputs_get_a_safe_in_character_reply_from_the_real_model(real_runtime, text):
    result = real_runtime.reply(1, ChatMessage("alice", text))
    assert result.text.strip() and is_safe(result.text)
    assert not any(line.strip().lower().startswith(("bob:", "alice:")) for line in result.text.splitlines())
    assert result.assembled.tokens <= real_runtime.settings.CONTEXT_TOKENS
    assert len(result.text) <= real_runtime.settings.REPLY_MAX_CHARS
