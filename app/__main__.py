"""Command line: `python -m app chat|index|backfill|forget ...` (`--help` on each)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from config.logs import setup_logging

logger = logging.getLogger("app")


def _chat(args: argparse.Namespace) -> int:
    from app.console import Console, parse_line
    from app.runtime import build_runtime
    from app.storage import lock_data_dir
    from config.settings import load_settings, secrets_of

    settings = load_settings()
    setup_logging(
        settings.LOG_LEVEL,
        settings.logs_dir / "chat.log",
        settings.LOG_FILE_MAX_MB,
        settings.LOG_FILE_BACKUPS,
        secrets=secrets_of(settings),
        to_stderr=args.verbose,
    )
    args.lock = lock_data_dir(settings, "the console")  # kept referenced: held until this process ends
    runtime = build_runtime(settings)
    try:
        console = Console(runtime, show_explain=args.explain, speaker=args.speaker)
        if args.once is not None:
            line = parse_line(args.once, args.speaker)
            console.say(line.author, line.text, force_reply=True)
        else:
            if not args.verbose:
                print(f"(log lines go to {settings.logs_dir / 'chat.log'}; --verbose shows them here)")
            console.loop()
    finally:
        runtime.close()
    return 0


def _bot(args: argparse.Namespace) -> int:
    import asyncio

    from app.bot import check_bot_settings, explain_startup_error, run_bot
    from app.runtime import build_runtime
    from config.settings import load_settings, secrets_of

    settings = load_settings()
    setup_logging(
        settings.LOG_LEVEL,
        settings.logs_dir / "bot.log",
        settings.LOG_FILE_MAX_MB,
        settings.LOG_FILE_BACKUPS,
        secrets=secrets_of(settings),
    )
    check_bot_settings(settings)
    from app.storage import lock_data_dir

    args.lock = lock_data_dir(settings, "the bot")  # kept referenced: held until this process ends
    runtime = build_runtime(settings)
    try:
        asyncio.run(run_bot(runtime, settings))
    except Exception as exc:
        message = explain_startup_error(exc)
        if message is None:
            raise
        logger.error("%s", message)
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        runtime.close()
    return 0


def _train(args: argparse.Namespace) -> int:
    from app.train import main_train
    from config.settings import load_settings, secrets_of

    overrides = {"TRAIN_RECIPE": args.recipe} if args.recipe else {}
    settings = load_settings(**overrides)
    setup_logging(settings.LOG_LEVEL, secrets=secrets_of(settings))
    return main_train(settings)


def _history(args: argparse.Namespace) -> int:
    from app import history
    from app.storage import lock_data_dir
    from config.settings import load_settings, secrets_of

    settings = load_settings()
    setup_logging(settings.LOG_LEVEL, secrets=secrets_of(settings))  # backfill talks to Discord with the token
    reading = args.command == "index" and (args.action == "stats" or (args.action == "check" and not args.repair))
    if not reading:  # reading the index is safe beside the bot
        args.lock = lock_data_dir(
            settings, f"`python -m app {args.command}{' ' + args.action if args.command == 'index' else ''}`"
        )
    if args.command == "backfill":
        return history.backfill(settings)
    if args.command == "forget":
        return history.forget(settings, args.user_id, args.names, args.yes)
    if args.action == "stats":
        return history.stats(settings)
    if args.action == "update":
        return history.update(settings, args.source, args.any_channel, args.licensed)
    if args.action == "check":
        return history.check(settings, args.repair, args.leftovers)
    return history.rebuild(settings, args.source, args.any_channel, args.licensed)


def _doctor(args: argparse.Namespace) -> int:
    from app.doctor import doctor
    from config.settings import SettingsError, load_settings, secrets_of

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"FIX   settings: {exc}")
        return 1
    setup_logging("ERROR", secrets=secrets_of(settings))  # the checks' lines only
    print("ok    settings: valid")
    return doctor(settings)


def _healthcheck(args: argparse.Namespace) -> int:
    from app.metrics import check_health
    from config.settings import load_settings

    settings = load_settings()
    if not settings.METRICS_PORT:
        print("error: METRICS_PORT is not set: the bot serves no /healthz to ask", file=sys.stderr)
        return 2
    healthy, said = check_health(settings.METRICS_HOST, settings.METRICS_PORT)
    print(said)
    return 0 if healthy else 1


def _export_model(args: argparse.Namespace) -> int:
    import shutil

    from llm.model import packaged_gguf

    target = args.folder / "model.gguf"
    args.folder.mkdir(parents=True, exist_ok=True)
    if not target.is_file() or target.stat().st_size != packaged_gguf().stat().st_size:
        shutil.copyfile(packaged_gguf(), target)
    print(target)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Every command of `python -m app`, each with the function that runs it (`args.run`)."""
    parser = argparse.ArgumentParser(prog="python -m app", description="The Discord character bot.")
    sub = parser.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("chat", help="talk to the character in the console channel")
    chat.add_argument("--once", metavar="TEXT", help='answer one message, e.g. "alice: @Susu hi", and exit')
    chat.add_argument("--explain", action="store_true", help="print how each reply was made, stage by stage")
    chat.add_argument("--as", dest="speaker", default="you", help="the member you speak as (default: you)")
    chat.add_argument(
        "--verbose", action="store_true", help="log lines and warnings on the screen too (else in LOG_DIR/chat.log)"
    )
    chat.set_defaults(run=_chat)

    export = sub.add_parser(
        "export-model", help="copy the packaged default model (GGUF) to FOLDER/model.gguf, for an inference server"
    )
    export.add_argument("folder", type=Path)
    export.set_defaults(run=_export_model)
    check = sub.add_parser("doctor", help="check a deployment: a line per check, what is fine and what to fix")
    check.set_defaults(run=_doctor)
    health = sub.add_parser("healthcheck", help="ask a running bot's /healthz (METRICS_PORT): exit 0 when healthy")
    health.set_defaults(run=_healthcheck)
    bot = sub.add_parser("bot", help="run the character in its Discord channel (DISCORD_* settings)")
    bot.set_defaults(run=_bot)

    train = sub.add_parser(
        "train", help="prepare training data from the store and train a LoRA adapter (separate process)"
    )
    train.add_argument("--recipe", type=Path, help="a training recipe (default: TRAIN_RECIPE)")
    train.set_defaults(run=_train)

    index = sub.add_parser("index", help="import exports and build the lore index")
    actions = index.add_subparsers(dest="action", required=True)
    for action, text in (
        ("rebuild", "import exports (optional), then rebuild the whole index from the store"),
        ("update", "import a newer export and index only what changed"),
    ):
        parser_ = actions.add_parser(action, help=text)
        parser_.add_argument(
            "--from",
            dest="source",
            type=Path,
            required=action == "update",
            metavar="PATH",
            help="a DiscordChatExporter export (JSON, CSV, TXT, HTML) or a folder of them",
        )
        parser_.add_argument(
            "--any-channel", action="store_true", help="accept exports of other channels than DISCORD_CHANNEL_ID"
        )
        parser_.add_argument(
            "--licensed",
            action="store_true",
            help="you declare you may use these messages to train the voice (with TRAINING_CONSENT=consented)",
        )
    actions.add_parser("stats", help="messages per member and month, lore, index size")
    check = actions.add_parser("check", help="compare the store and the index: missing, orphaned, stale, pending")
    check.add_argument("--repair", action="store_true", help="mend what differs (no full rebuild)")
    check.add_argument(
        "--leftovers", action="store_true", help="with --repair: also remove collections of unfinished rebuilds"
    )
    index.set_defaults(run=_history)
    backfill = sub.add_parser("backfill", help="collect the channel's history from Discord (resumes where it stopped)")
    backfill.set_defaults(run=_history)
    forget = sub.add_parser("forget", help="remove a member's messages everywhere and skip them from now on")
    forget.add_argument("user_id", type=int, metavar="USER_ID")
    forget.add_argument(
        "--name",
        dest="names",
        action="append",
        default=[],
        metavar="NAME",
        help="a name the member is shown by in exports without ids (plain text, CSV); may be repeated. "
        "What it matches is shown first; --yes removes it",
    )
    forget.add_argument("--yes", action="store_true", help="with --name: remove what the preview showed")
    forget.set_defaults(run=_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from errors import UserError

    try:
        return args.run(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
