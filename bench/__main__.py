"""`python -m bench reply|bot|soak|faults|import|bigjson|retrieval|training|all`: run benchmarks
and print their figures.

`all` runs every benchmark (the 1 GB `bigjson` only with --with-bigjson) and writes one markdown
report, with the machine it ran on, to bench/results/report.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument(
        "name",
        choices=["reply", "bot", "soak", "faults", "import", "bigjson", "retrieval", "training", "all"],
        help="which benchmark to run",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where to save the JSON figures")
    parser.add_argument("--messages", type=int, default=63_000, help="import: messages in the generated export")
    parser.add_argument("--gigabytes", type=float, default=1.0, help="bigjson: size of the generated export")
    parser.add_argument("--sizes", default="10000,100000", help="retrieval: index sizes, comma-separated")
    parser.add_argument("--queries", type=int, default=200, help="retrieval: questions timed at each size")
    parser.add_argument(
        "--with-bigjson", action="store_true", help="all: include the 1 GB streaming import (about 10 minutes)"
    )
    parser.add_argument(
        "--recipe", type=Path, default=Path("training/recipes/cpu-smoke.yaml"), help="training: the recipe"
    )
    parser.add_argument("--steps", type=int, default=10, help="training: optimizer steps to measure")
    parser.add_argument("--kills", type=int, default=50, help="faults: how many processes to kill -9")
    args = parser.parse_args(argv)
    if args.name == "all":
        return run_all(args)
    if args.name == "reply":
        from bench import reply

        print(reply.report(reply.run(args.out)))
        return 0
    if args.name == "bot":
        from bench import bot

        print(bot.report(bot.run(args.out)))
        return 0
    if args.name == "soak":
        from bench import soak

        print(soak.report(soak.run(args.out)))
        return 0
    if args.name == "faults":
        from bench import faults

        result = faults.run(args.out, args.kills)
        print(faults.report(result))
        return 0 if result["lost"] == result["duplicated"] == 0 and result["faults_told"] else 1
    if args.name == "training":
        from bench import training

        print(training.report(training.run(args.out, args.recipe, args.steps)))
        return 0
    from bench import history

    if args.name == "import":
        result = history.run_import(args.messages)
        print(history.report_import(result))
    elif args.name == "bigjson":
        result = history.run_bigjson(args.gigabytes)
        print(history.report_bigjson(result))
    else:
        result = history.run_retrieval(tuple(int(s) for s in args.sizes.split(",")), args.queries)
        print(history.report_retrieval(result))
    history.save(args.out, args.name, result)
    return 0


def run_all(args) -> int:
    """Every benchmark in turn, one markdown report."""
    import time

    from bench import bot, history, reply, soak, training
    from bench.machine import describe, memory_bandwidth_gbs

    sections = []
    started = time.perf_counter()
    steps = [
        ("reply", lambda: reply.report(reply.run(args.out))),
        ("bot", lambda: bot.report(bot.run(args.out))),
        ("soak", lambda: soak.report(soak.run(args.out))),
        (
            "import",
            lambda: _saved(history, args.out, "import", history.run_import(args.messages), history.report_import),
        ),
        (
            "retrieval",
            lambda: _saved(
                history,
                args.out,
                "retrieval",
                history.run_retrieval(tuple(int(s) for s in args.sizes.split(",")), args.queries),
                history.report_retrieval,
            ),
        ),
        ("training", lambda: training.report(training.run(args.out, args.recipe, args.steps))),
    ]
    if args.with_bigjson:
        steps.append(
            (
                "bigjson",
                lambda: _saved(
                    history, args.out, "bigjson", history.run_bigjson(args.gigabytes), history.report_bigjson
                ),
            )
        )
    for name, step in steps:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        text = step()
        print(text, flush=True)
        sections.append(text)
    header = [
        "# Benchmark report",
        "",
        f"- machine: {describe()}, memory copy bandwidth {memory_bandwidth_gbs():.1f} GB/s",
        f"- date: {time.strftime('%Y-%m-%d %H:%M')}, all benchmarks in {time.perf_counter() - started:.0f} s",
        "",
    ]
    body = "\n".join(_as_markdown(section) for section in sections)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text("\n".join(header) + body + "\n", encoding="utf-8")
    print(f"report written to {args.out / 'report.md'}")
    return 0


def _as_markdown(section: str) -> str:
    title, _, rest = section.partition("\n")
    return f"## {title.lstrip('# ')}\n\n```\n{rest}\n```\n"


def _saved(history, out, name, result, render) -> str:
    history.save(out, name, result)
    return render(result)


if __name__ == "__main__":
    sys.exit(main())
