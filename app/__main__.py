"""Command line: `python -m app chat [--once TEXT] [--explain]`."""

from __future__ import annotations

import argparse
import logging
import sys

from app.logs import setup_logging

logger = logging.getLogger("app")


def _chat(args: argparse.Namespace) -> int:
    from app.console import Console, parse_line
    from app.runtime import build_runtime
    from app.settings import load_settings

    settings = load_settings()
    setup_logging(settings.LOG_LEVEL)
    runtime = build_runtime(settings)
    try:
        console = Console(runtime, show_explain=args.explain, speaker=args.speaker)
        if args.once is not None:
            line = parse_line(args.once, args.speaker)
            console.say(line.author, line.text, force_reply=True)
        else:
            console.loop()
    finally:
        runtime.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description="The Discord character bot.")
    sub = parser.add_subparsers(dest="command", required=True)
    chat = sub.add_parser("chat", help="talk to the character in the console channel")
    chat.add_argument("--once", metavar="TEXT", help='answer one message, e.g. "alice: @Susu hi", and exit')
    chat.add_argument("--explain", action="store_true", help="print how each reply was made, stage by stage")
    chat.add_argument("--as", dest="speaker", default="you", help="the member you speak as (default: you)")
    chat.set_defaults(run=_chat)
    args = parser.parse_args(argv)
    setup_logging()
    from app.settings import SettingsError
    from chains.model import ModelLoadError
    from prompts import PromptError

    try:
        return args.run(args)
    except (SettingsError, PromptError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
