"""The container image and the compose stack: every command they run is real, and the layout they describe works.

No Docker engine runs here, so the files are checked as data (and by `docker compose config` where the
compose client is installed), and the README's deployment is walked through by hand: the model copied out
as the `model` service does, llama.cpp's server on 127.0.0.1 serving it as `llm` does, the bot answering
through it as `bot` does.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
OUR_IMAGE = "character-bot:cpu"


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def our_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) of every command run in the bot's image: its CMD, and the compose services built on it."""
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile(), re.M)
    commands = [("Dockerfile CMD", json.loads(cmd.group(1)))]
    for name, service in compose()["services"].items():
        if service.get("image") != OUR_IMAGE:
            continue
        commands.append((f"{name}: command", service["command"]))
        test = service.get("healthcheck", {}).get("test")
        if test:
            commands.append((f"{name}: healthcheck", test[1:]))  # after "CMD"
    return commands


def check_entry_point(argv: list[str]) -> None:
    """Raises AssertionError unless `argv` runs something that exists here as it will in the image."""
    if argv[:2] == ["python", "-m"]:
        module = argv[2]
        proc = subprocess.run(
            [sys.executable, "-m", module, *argv[3:4], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, f"{argv}: {proc.stderr[-2000:]}"
    elif argv[:2] == ["python", "-c"]:
        compile(argv[2], "<healthcheck>", "exec")
    else:
        assert (Path(sys.executable).parent / argv[0]).is_file(), f"{argv[0]} is not installed by `make setup`"


def test_every_command_the_image_and_the_compose_file_run_is_a_real_entry_point():
    commands = our_commands()
    assert {where for where, _ in commands} >= {
        "Dockerfile CMD",
        "bot: command",
        "bot: healthcheck",
        "train: command",
        "chroma: command",
        "model: command",
    }
    for where, argv in commands:
        try:
            check_entry_point(argv)
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None
    assert json.loads(re.search(r"^CMD (\[.*\])$", dockerfile(), re.M).group(1)) == ["python", "-m", "app", "bot"]
    with pytest.raises(AssertionError):
        check_entry_point(["python", "-m", "app", "no-such-command"])
    with pytest.raises(AssertionError):
        check_entry_point(["chroma-server-that-is-not-installed", "run"])


def test_the_image_installs_like_the_quick_start_runs_unprivileged_and_keeps_state_on_volumes():
    text = dockerfile()
    assert "COPY Makefile requirements.txt constraints.txt requirements-models.txt ./" in text
    assert re.search(r"^RUN make setup ", text, re.M)  # the quick start's own target and pinned files
    assert re.search(r"^USER bot$", text, re.M) and "useradd" in text
    volumes = json.loads(re.search(r"^VOLUME (\[.*?\])", text, re.M).group(1))
    assert set(volumes) == {"/data", "/adapters", "/logs"}
    env = "\n".join(re.findall(r"^(?:ENV|ARG) .*(?:\n    .*)*", text, re.M))
    assert not re.search(r"TOKEN|API_KEY|SECRET", env)  # secrets come from the environment at run time only
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".env", ".venv", ".git", "adapters", "logs"} <= set(ignored)


def test_the_compose_stack_waits_for_healthy_services_and_restarts_them():
    stack = compose()
    services = stack["services"]
    assert set(services) >= {"bot", "chroma", "llm", "model", "train"}
    bot = services["bot"]
    assert bot["depends_on"] == {"chroma": {"condition": "service_healthy"}, "llm": {"condition": "service_healthy"}}
    assert bot["env_file"] == ".env" and bot["environment"]["CHROMA_HOST"] == "chroma"
    assert bot["environment"]["OPENAI_BASE_URL"] == "http://llm:8080/v1" and bot["environment"]["METRICS_PORT"]
    for name in ("bot", "chroma", "llm"):
        assert services[name]["restart"] == "unless-stopped" and services[name]["healthcheck"]["test"], name
    assert services["llm"]["depends_on"] == {"model": {"condition": "service_completed_successfully"}}
    assert services["train"]["profiles"] == ["train"] and services["train"]["command"][-1] == "train"
    used = {v.split(":")[0] for s in services.values() for v in s.get("volumes", [])}
    assert used <= set(stack["volumes"])  # named volumes, declared
    for key in ("DATA_DIR", "ADAPTERS_DIR", "LOG_DIR"):  # on the volumes, whatever .env says
        assert bot["environment"][key] in {v.split(":")[1] for v in bot["volumes"]}
    from config.settings import load_settings

    load_settings(**{k: v for k, v in bot["environment"].items()})  # every value is a valid setting
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        env_file = ROOT / ".env"
        made = not env_file.exists()
        if made:
            shutil.copyfile(ROOT / ".env.example", env_file)
        try:
            proc = subprocess.run(["docker", "compose", "config", "-q"], cwd=ROOT, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
        finally:
            if made:
                env_file.unlink()


@pytest.mark.slow
def test_the_scale_out_layout_walked_through_by_hand(tmp_path):
    """As compose does: `model` copies the GGUF out, `llm` serves it, `bot` answers through it (ENGINE=openai)."""
    import xllamacpp

    from llm.model import packaged_gguf

    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "LOG_DIR": str(tmp_path / "logs"),
        "MODEL_CACHE_DIR": str(ROOT / "data" / "models"),
    }
    models = tmp_path / "models"
    proc = subprocess.run(
        [sys.executable, "-m", "app", "export-model", str(models)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == str(models / "model.gguf"), proc.stderr[-2000:]
    assert (models / "model.gguf").read_bytes()[:4] == b"GGUF"
    assert (models / "model.gguf").stat().st_size == packaged_gguf().stat().st_size

    params = xllamacpp.CommonParams()  # llama.cpp's server, as the `llm` service runs it (-m /models/model.gguf)
    params.model.path = str(models / "model.gguf")
    params.n_ctx = 4096
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 2
    params.verbosity = -1
    server = xllamacpp.Server(params)
    try:
        env.update(ENGINE="openai", OPENAI_BASE_URL=server.listening_address + "/v1", RAG_TOP_K="0")
        proc = subprocess.run(
            [sys.executable, "-m", "app", "chat", "--once", "bob: @Susu hi!"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        del server
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith("Susu: ") and len(proc.stdout.strip()) > len("Susu:")
    assert "via openai" in (tmp_path / "logs" / "chat.log").read_text(encoding="utf-8")
