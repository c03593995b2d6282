"""One typed settings object, read from the environment and `.env`.

Secrets (the Discord token) come only from the environment; everything else has a documented
default. `load_settings()` turns pydantic's validation errors into one readable `SettingsError`
that names each bad variable and what it accepts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.logs import URL_CREDENTIALS
from errors import UserError
from llm.config import DEFAULT_MODEL, ModelConfig

# Settings the running bot keeps until a restart (`!reload` names them when they changed): its
# connection, where its files live, and what its event handlers were built with.
RESTART_SETTINGS = (
    "DISCORD_BOT_TOKEN",
    "DISCORD_GUILD_ID",
    "DISCORD_CHANNEL_ID",
    "DISCORD_API_BASE",
    "DISCORD_GATEWAY_URL",
    "DATA_DIR",
    "CHROMA_HOST",
    "CHROMA_PORT",
    "CHROMA_COLLECTION",
    "EMBED_MODEL",
    "EMBED_DTYPE",
    "LOG_DIR",
    "LOG_LEVEL",
    "LOG_FILE_MAX_MB",
    "LOG_FILE_BACKUPS",
    "COMMAND_PREFIX",
    "ALLOW_DMS",
    "REPLY_QUEUE_LIMIT",
    "SAMPLE_EXPORT",
    "METRICS_PORT",
    "METRICS_HOST",
)
SECRET_SETTINGS = ("DISCORD_BOT_TOKEN", "OPENAI_API_KEY", "EVAL_JUDGE_API_KEY")
# Where settings are read from besides the environment; child processes get theirs in the environment
# and ENV_FILE="" so that they never read the secrets in .env.
ENV_FILE_VARIABLE = "ENV_FILE"


class SettingsError(UserError, ValueError):
    """A setting has a value that is not allowed; the message names the variable."""


class Settings(BaseSettings):
    """Every setting of the bot. Field names are the environment variable names."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", case_sensitive=True, env_ignore_empty=True
    )

    # Discord (used by the bot; the console needs none of them)
    DISCORD_BOT_TOKEN: SecretStr | None = None
    DISCORD_GUILD_ID: int | None = None
    DISCORD_CHANNEL_ID: int | None = Field(
        None, description="the character's channel; imports of other channels are refused"
    )
    DISCORD_API_BASE: str = Field(
        "https://discord.com/api/v10", description="REST base URL: Discord's own, or a REST proxy"
    )
    DISCORD_GATEWAY_URL: str = Field(
        "wss://gateway.discord.gg/", description="gateway websocket URL: Discord's own, or a gateway proxy"
    )
    REQUESTS_PER_SECOND: float = Field(2.0, gt=0, le=50, description="backfill pace (history pages per second)")

    # The bot in the channel
    COMMAND_PREFIX: str = Field("!", min_length=1, max_length=5)
    ADMIN_ROLE_IDS: Annotated[tuple[int, ...], NoDecode] = Field(
        (), description="comma-separated role ids whose members may use admin commands (besides Manage Server)"
    )
    USER_COOLDOWN_SECONDS: float = Field(8.0, ge=0, description="one reply per member per this many seconds")
    REPLY_QUEUE_LIMIT: int = Field(5, ge=1, le=1000, description="replies waiting; beyond it members get a busy line")
    STREAM_REPLIES: bool = Field(True, description="post a reply at its first sentence and edit it as it grows")
    STREAM_EDIT_SECONDS: float = Field(
        1.0, ge=0.2, le=10, description="least time between two edits of a streamed reply"
    )
    ALLOW_DMS: bool = Field(False, description="answer direct messages too")
    ALLOWED_LINK_DOMAINS: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated domains whose links a reply may post whole (others: shown as their domain)"
    )
    ALLOWED_INVITES: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated Discord invite codes a reply may post (others are removed)"
    )
    REPLY_IN_THREADS: bool = Field(True, description="also live in threads under the channel")

    # Model
    ENGINE: Literal["auto", "transformers", "llamacpp", "openai"] = Field(
        "auto", description="auto: openai if OPENAI_BASE_URL is set, transformers with CUDA or 4-bit, else llamacpp"
    )
    MODEL_NAME: str = Field(
        DEFAULT_MODEL,
        description="'smollm2-135m-instruct' (packaged, CPU), a hub id such as "
        "mistralai/Mistral-7B-v0.3 already in the local cache, or a local model folder",
    )
    ADAPTER_PATH: Path | None = Field(None, description="LoRA adapter folder applied with peft")
    ENABLE_QUANTIZATION: bool = Field(False, description="load the model in 4-bit NF4 (bitsandbytes)")
    DEVICE: Literal["auto", "cpu", "cuda"] = "auto"
    LLAMACPP_WEIGHTS: Literal["as-is", "q8_0"] = Field(
        "as-is",
        description="llamacpp: read the GGUF as it is, or re-lay its matrices out as Q8_0 once "
        "(faster prompts, 2x the memory)",
    )
    ENGINE_THREADS: int | None = Field(
        None, ge=1, le=512, description="CPU threads for generation and embeddings; unset: every usable core"
    )
    OPENAI_BASE_URL: str | None = Field(
        None, description="an OpenAI-compatible server (vLLM, llama.cpp server, TGI), e.g. http://gpu-box:8000/v1"
    )
    OPENAI_MODEL: str | None = Field(None, description="the model name the server serves (default: MODEL_NAME)")
    OPENAI_ADAPTER: str | None = Field(None, description="a LoRA adapter by the name the server serves it under")
    OPENAI_API_KEY: SecretStr | None = Field(None, description="the server's API key, if it wants one")
    TORCH_DTYPE: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="weights dtype when not quantized; auto: bfloat16 (fp16 on GPUs without bf16)"
    )
    STATIC_CACHE: bool = Field(
        False,
        description="transformers: a pre-allocated KV cache instead of reusing the cache of the shared prompt prefix",
    )
    TEMPERATURE: float = Field(0.7, ge=0.0, le=2.0)
    TOP_P: float = Field(0.9, gt=0.0, le=1.0)
    REPETITION_PENALTY: float = Field(1.05, ge=1.0, le=2.0)
    MAX_NEW_TOKENS: int = Field(60, ge=1, le=1024)
    GENERATION_TIMEOUT_SECONDS: float = Field(30.0, gt=0)
    SEED: int | None = Field(None, description="fix sampling for reproducible replies")

    # Context and memory
    CONTEXT_TOKENS: int = Field(384, ge=128, le=32768, description="prompt budget in model tokens")
    SHORT_TERM_WINDOW: int = Field(20, ge=1, le=500)
    SUMMARIZE_INTERVAL: int = Field(5, ge=1, le=1000)
    REPLY_MAX_CHARS: int = Field(600, ge=50, le=4000)

    # Retrieval
    GROUNDING: Literal["check", "off"] = Field(
        "check", description="check replies to questions against the lore found; answer from it when they miss it"
    )
    GROUNDING_MIN_SCORE: float = Field(
        0.5, ge=0, le=1, description="how close (cosine) a lore sentence must be to a question to count as its answer"
    )
    RAG_TOP_K: int = Field(5, ge=0, le=50)
    RAG_CANDIDATES: int = Field(20, ge=1, le=500, description="similarity hits re-ranked per query")
    W_SIM: float = Field(1.0, ge=0.0, description="weight of the dense (cosine) similarity to the question")
    W_LEX: float = Field(
        0.2,
        ge=0.0,
        description="weight of the share of the question's words (by rarity) a message holds (0: dense only)",
    )
    W_REC: float = Field(
        0.03, ge=0.0, description="bonus of a message posted now (halves every RECENCY_HALF_LIFE_DAYS)"
    )
    W_ENG: float = Field(0.08, ge=0.0, description="bonus of a message with ENGAGEMENT_SCALE reactions and replies")
    ENGAGEMENT_SCALE: int = Field(20, ge=1, description="reactions and replies that earn the full W_ENG")
    LORE_BOOST: float = Field(0.1, ge=0.0)
    QUESTION_PENALTY: float = Field(
        0.1, ge=0.0, description="taken from a short message that only asks: the answer to it holds the fact"
    )
    RECENCY_HALF_LIFE_DAYS: float = Field(180.0, gt=0)
    MIN_SIMILARITY: float = Field(0.2, ge=-1.0, le=1.0, description="drop hits below this")
    CHROMA_COLLECTION: str = "lore"
    CHROMA_HOST: str | None = Field(
        None, description="a Chroma server (`chroma run`); unset: embedded Chroma under DATA_DIR"
    )
    CHROMA_PORT: int = Field(8000, ge=1, le=65535)
    EMBED_MODEL: str = Field(
        "all-minilm-l6-v2",  # indexes.vector.DEFAULT_EMBEDDER (config sits below indexes: tests check the two agree)
        description="the embedding model of the lore index and the grounding check: 'all-minilm-l6-v2' "
        "(packaged), a sentence-transformers folder, or a hub id already in the local cache; "
        "changing it rebuilds the index",
    )
    EMBED_DTYPE: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="embedding model dtype; auto: bfloat16 where the CPU/GPU has it natively"
    )
    INDEX_MIN_CHARS: int = Field(10, ge=0, description="shorter messages stay in the store but are not indexed")

    # History import and lore
    IMPORT_SKIP_BOTS: bool = True
    IMPORT_SKIP_COMMANDS: bool = True
    COMMAND_PREFIXES: Annotated[tuple[str, ...], NoDecode] = Field(
        ("!", "/", "?", "$", ".", ";;"), description="comma-separated prefixes of bot commands"
    )
    IMPORT_SKIP_SYSTEM: bool = Field(True, description="joins, pins, boosts, thread notices")
    IMPORT_SKIP_LINK_ONLY: bool = True
    IMPORT_MAX_CHARS: int = Field(4000, ge=100, description="longer messages are cut (with a warning)")
    IMPORT_DAYFIRST: bool = Field(False, description="locale dates in CSV/TXT/HTML exports are day-first (24/11/2020)")
    LORE_KEYWORDS: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="comma-separated words that make a message lore (server names, events)"
    )

    # Members' data (see the README's privacy section)
    PRIVATE_THREADS: Literal["ignore", "thread"] = Field(
        "ignore",
        description="private threads under the channel: ignore (never stored), "
        "or thread (kept, found only in that thread)",
    )
    RETENTION_DAYS: int | None = Field(
        None, ge=1, description="messages older than this many days are deleted everywhere (unset: kept)"
    )
    TRAINING_CONSENT: Literal["consented", "all"] = Field(
        "consented",
        description="train on the messages of members who consented (!consent) and licensed exports only; "
        "all: every stored message (Discord's Developer Policy forbids it without Discord's permission)",
    )
    CONSENT_ROLE_ID: int | None = Field(None, description="members with this role count as consenting to training")

    # Training (unset: the recipe's value)
    TRAIN_RECIPE: Path = Field(
        Path("training/recipes/cpu-smoke.yaml"), description="recipe used by !train and python -m app train"
    )
    TRAIN_AUTO_RELOAD: bool = Field(
        False, description="after !train succeeds, load the new adapter into the running bot"
    )
    ADAPTERS_DIR: Path = Field(Path("adapters"), description="trained adapters go to ADAPTERS_DIR/<recipe name>/")
    EPOCHS: float | None = Field(None, gt=0, description="training epochs (overrides the recipe)")
    GRADIENT_ACCUMULATION_STEPS: int | None = Field(None, ge=1, description="overrides the recipe")
    LEARNING_RATE: float | None = Field(None, gt=0, description="overrides the recipe")
    USE_FP16: bool | None = Field(None, description="true: fp16 (bf16 where the GPU supports it); false: fp32")

    # Evals
    EVAL_JUDGE_MODEL: str | None = Field(
        None, description="the judge of response relevancy and faithfulness: a model the factory loads, or served"
    )
    EVAL_JUDGE_BASE_URL: str | None = Field(
        None, description="an OpenAI-compatible server (/v1) serving EVAL_JUDGE_MODEL; unset: loaded here"
    )
    EVAL_JUDGE_API_KEY: SecretStr | None = Field(None, description="the judge server's API key, if it wants one")

    # Files
    DATA_DIR: Path = Path("data")
    PROMPTS_DIR: Path = Path("prompts")
    PERSONA_FILE: Path = Field(
        Path("prompts/persona.yaml"),
        description="persona YAML, or a Character Card V2 (.json, or .png with a chara chunk)",
    )
    MODEL_CACHE_DIR: Path = Field(Path("data/models"), description="converted default model (made once)")
    SAMPLE_EXPORT: Path = Path("data/sample/export.json")
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    LOG_DIR: Path = Field(Path("logs"), description="the bot writes bot.log here (rotated)")
    LOG_FILE_MAX_MB: float = Field(5.0, gt=0)
    LOG_FILE_BACKUPS: int = Field(5, ge=0)
    METRICS_PORT: int | None = Field(
        None, ge=1, le=65535, description="serve /metrics (Prometheus) and /healthz on this port; unset: off"
    )
    METRICS_HOST: str = Field("127.0.0.1", description="the address /metrics and /healthz listen on")

    @field_validator("MODEL_NAME", "CHROMA_COLLECTION", "EMBED_MODEL")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    @field_validator(
        "COMMAND_PREFIXES", "LORE_KEYWORDS", "ADMIN_ROLE_IDS", "ALLOWED_LINK_DOMAINS", "ALLOWED_INVITES", mode="before"
    )
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, int):
            return (value,)
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> Settings:
        if self.W_SIM + self.W_LEX == 0:
            raise ValueError("W_SIM and W_LEX must not both be 0: replies would be found by recency alone")
        if self.MAX_NEW_TOKENS >= self.CONTEXT_TOKENS:
            raise ValueError("MAX_NEW_TOKENS must be smaller than CONTEXT_TOKENS")
        if self.ENGINE == "openai" and not self.OPENAI_BASE_URL:
            raise ValueError("ENGINE=openai needs OPENAI_BASE_URL (the server's /v1 URL)")
        return self

    def model_options(self) -> ModelConfig:
        """The model configuration `chains/` works with."""
        return ModelConfig(
            model_name=self.MODEL_NAME,
            engine=self.ENGINE,
            adapter_path=self.ADAPTER_PATH,
            quantization=self.ENABLE_QUANTIZATION,
            device=self.DEVICE,
            dtype=self.TORCH_DTYPE,
            static_cache=self.STATIC_CACHE,
            cache_dir=self.MODEL_CACHE_DIR,
            llamacpp_weights=self.LLAMACPP_WEIGHTS,
            threads=self.ENGINE_THREADS,
            context_tokens=self.CONTEXT_TOKENS,
            max_new_tokens=self.MAX_NEW_TOKENS,
            temperature=self.TEMPERATURE,
            top_p=self.TOP_P,
            repetition_penalty=self.REPETITION_PENALTY,
            timeout_s=self.GENERATION_TIMEOUT_SECONDS,
            seed=self.SEED,
            openai_base_url=self.OPENAI_BASE_URL,
            openai_model=self.OPENAI_MODEL,
            openai_adapter=self.OPENAI_ADAPTER,
            openai_api_key=self.OPENAI_API_KEY.get_secret_value() if self.OPENAI_API_KEY else None,
        )

    @property
    def chroma_path(self) -> Path:
        return self.DATA_DIR / "chroma"

    @property
    def store_path(self) -> Path:
        return self.DATA_DIR / "messages.sqlite3"

    @property
    def training_data(self) -> Path:
        return self.DATA_DIR / "training_data.jsonl"

    @property
    def logs_dir(self) -> Path:
        return self.LOG_DIR


def _describe(error: dict) -> str:
    loc = ".".join(str(part) for part in error.get("loc", ())) or "settings"
    value = error.get("input")
    shown = "" if isinstance(value, dict) or value is None else f"={value!r}"
    message = error.get("msg", "invalid").removeprefix("Value error, ")
    return f"{loc}{shown}: {message}"


_URL_SETTINGS = ("OPENAI_BASE_URL", "EVAL_JUDGE_BASE_URL", "DISCORD_API_BASE", "DISCORD_GATEWAY_URL")
_SECRET_WORDS = ("TOKEN", "KEY", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL", "AUTH", "COOKIE")


def without_credentials(url: str) -> str:
    """A URL without the `user:password@` it may carry."""
    try:
        parts = urlsplit(url)
        if not parts.username and not parts.password:
            return url
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:  # not a URL urllib can read (a bad port, a stray bracket): cut whatever precedes an @
        return URL_CREDENTIALS.sub("", url)


def secrets_of(settings: Settings) -> list[str]:
    """The secret values among the settings, for log redaction (credentials inside URLs included)."""
    values = [getattr(settings, name) for name in SECRET_SETTINGS]
    secrets = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
    for name in _URL_SETTINGS:
        parts = urlsplit(getattr(settings, name) or "")
        secrets += [p for p in (parts.password, parts.username) if p]
    return secrets


def child_environment(settings: Settings, keep: tuple[str, ...] = ()) -> dict[str, str]:
    """The environment for a child process: the system's basics and every setting but the secrets.

    Children (data preparation, training) get no token, key or password: not the secret settings, not
    a variable whose name says it holds one (HF_TOKEN, AWS_SECRET_ACCESS_KEY, ...), not the
    credentials inside a URL (a setting's or a variable's, HF_ENDPOINT=https://user:pass@...), and nothing
    from .env.
    """
    basics = (
        "PATH",
        "HOME",
        "LANG",
        "LANGUAGE",
        "TMPDIR",
        "TZ",
        "VIRTUAL_ENV",
        "PYTHONPATH",
        "PYTHONHASHSEED",
        "SYSTEMROOT",
    )
    prefixes = (
        "LC_",
        "HF_",
        "TRANSFORMERS_",
        "TOKENIZERS_",
        "CUDA_",
        "OMP_",
        "MKL_",
        "PYTORCH_",
        "ANONYMIZED_TELEMETRY",
    )
    environment = {
        k: without_credentials(v) if "://" in v else v
        for k, v in os.environ.items()
        if (k in basics or k in keep or k.startswith(prefixes)) and not any(word in k.upper() for word in _SECRET_WORDS)
    }
    for name, value in settings.model_dump(mode="json").items():
        if name in SECRET_SETTINGS or value is None:
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        environment[name] = without_credentials(text) if name in _URL_SETTINGS else text
    environment[ENV_FILE_VARIABLE] = ""
    return environment


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and `.env` (or ENV_FILE); raise SettingsError naming bad variables."""
    env_file = os.environ.get(ENV_FILE_VARIABLE, ".env") or None
    try:
        return Settings(_env_file=env_file, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = "\n".join(f"  {_describe(err)}" for err in exc.errors())
        raise SettingsError(f"Invalid settings (see .env.example):\n{lines}") from None
