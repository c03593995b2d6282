"""`python -m bench reply|bot|import|bigjson|retrieval`: run a benchmark and print its figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("name", choices=["reply", "bot", "import", "bigjson", "retrieval"], help="which benchmark to run")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where to save the JSON figures")
    parser.add_argument("--messages", type=int, default=63_000, help="import: messages in the generated export")
    parser.add_argument("--gigabytes", type=float, default=1.0, help="bigjson: size of the generated export")
    parser.add_argument("--sizes", default="10000,100000", help="retrieval: index sizes, comma-separated")
    args = parser.parse_args(argv)
    if args.name == "reply":
        from bench import reply

        print(reply.report(reply.run(args.out)))
        return 0
    if args.name == "bot":
        from bench import bot

        print(bot.report(bot.run(args.out)))
        return 0
    from bench import history

    if args.name == "import":
        result = history.run_import(args.messages)
        print(history.report_import(result))
    elif args.name == "bigjson":
        result = history.run_bigjson(args.gigabytes)
        print(history.report_bigjson(result))
    else:
        result = history.run_retrieval(tuple(int(s) for s in args.sizes.split(",")))
        print(history.report_retrieval(result))
    history.save(args.out, args.name, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
