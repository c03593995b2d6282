"""`python -m evals run|gate|make`: relevance evals of the character's replies (see README.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evals.dataset import DEFAULT_SETS, DEV_SETS, EVAL_SEED, TEST_SETS, TUNED_SETS  # noqa: F401 (the sets, read by tests)


def _run(args) -> int:
    from app.storage import lock_data_dir
    from config.logs import setup_logging
    from config.settings import load_settings
    from evals.dataset import load_dataset
    from evals.report import write_report
    from evals.runner import previous_run, run_eval, settings_for, table

    overrides = {"PROMPTS_DIR": args.prompts} if args.prompts else {}
    settings = load_settings(**overrides)
    if settings.SEED is None:  # runs compare prompts and models, not sampling luck
        settings = load_settings(**overrides, SEED=EVAL_SEED)
    setup_logging("WARNING")
    default_prompts = str(load_settings().PROMPTS_DIR)
    for path in args.dataset or DEFAULT_SETS:
        eval_set = load_dataset(path)
        if eval_set.missing:
            print(f"eval set {eval_set.name}: SKIPPED ({eval_set.missing})")
            continue
        print(f"eval set {eval_set.name}: {len(eval_set.samples)} questions", file=sys.stderr)
        lock = lock_data_dir(settings_for(settings, eval_set), "`python -m evals run`")
        try:
            run = run_eval(
                settings,
                eval_set,
                runs_dir=args.runs,
                limit=args.limit,
                progress=lambda line: print(line, file=sys.stderr),
            )
        finally:
            if lock is not None:
                lock.release()
        baseline = previous_run(
            args.runs, run.id, run.dataset, default_prompts if args.prompts else None, len(run.samples)
        )
        report = write_report(run, baseline, args.thresholds)
        print(f"\n# {run.dataset}\n{table(run)}")
        print(f"\nrun saved in {run.path}; report: {report}")
        if baseline:
            changes = ", ".join(
                f"{m} {v - baseline['means'][m]:+.3f}"
                for m, v in run.means.items()
                if v is not None and baseline["means"].get(m) is not None
            )
            print(f"against {baseline['id']} (prompts {baseline['prompts_dir']}): {changes}")
    return 0


def _gate(args) -> int:
    from evals.dataset import load_dataset
    from evals.gate import check, load_thresholds
    from evals.runner import load_run

    thresholds = load_thresholds(args.thresholds)
    if args.run:
        passed, lines = check(load_run(args.run), thresholds)
        print(f"gate on {args.run}:")
        print("\n".join(lines))
        print("gate passed" if passed else "gate FAILED: a metric is below its threshold")
        return 0 if passed else 1
    runs = sorted(p for p in args.runs.glob("*") if (p / "run.json").is_file()) if args.runs.is_dir() else []
    passed = True
    for path in args.dataset or DEFAULT_SETS:
        eval_set = load_dataset(path)
        if eval_set.missing:
            print(f"gate on {eval_set.name}: SKIPPED ({eval_set.missing})")
            continue
        latest = next((p for p in reversed(runs) if load_run(p)["dataset"] == eval_set.name), None)
        if latest is None:
            print(f"gate on {eval_set.name}: FAILED: no run yet: run `python -m evals run` first")
            passed = False
            continue
        ok, lines = check(load_run(latest), thresholds)
        passed &= ok
        print(f"gate on {latest}:")
        print("\n".join(lines))
    print("gate passed" if passed else "gate FAILED: a metric is below its threshold")
    return 0 if passed else 1


def _retrieval(args) -> int:
    from config.logs import setup_logging
    from config.settings import load_settings
    from evals.dataset import load_dataset
    from evals.retrieval import details, retrieval_eval, summary
    from prompts import load_persona

    settings = load_settings()
    setup_logging("WARNING")
    for path in args.dataset or DEFAULT_SETS:
        eval_set = load_dataset(path)
        if eval_set.missing:
            print(f"{eval_set.name}: SKIPPED ({eval_set.missing})")
            continue
        character = load_persona(eval_set.persona or settings.PERSONA_FILE).name
        results = retrieval_eval(settings, eval_set, character)
        print(summary(eval_set.name, results), flush=True)
        if args.show:
            print(details(results), flush=True)
    return 0


def _make(args) -> int:
    from config.settings import load_settings
    from evals.make import make_from_export
    from prompts import load_persona

    character = load_persona(load_settings().PERSONA_FILE).name
    count = make_from_export(args.source, args.out, character, args.limit)
    print(f"{count} draft samples written to {args.out}: review them before use")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["adapter"]:  # its own parser, shared with `python -m training.evaluate`
        from evals.adapter import main as adapter

        return adapter(argv[1:])
    from evals.gate import THRESHOLDS
    from evals.runner import RUNS_DIR

    parser = argparse.ArgumentParser(prog="python -m evals", description="Relevance evals of the character's replies.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the real chain over an eval set and score it with ragas")
    run.add_argument(
        "--dataset", type=Path, action="append", help="an eval set file (repeatable; default: every default set)"
    )
    run.add_argument("--prompts", type=Path, help="a prompts folder to compare against the current one")
    run.add_argument("--limit", type=int, help="only the first N questions")
    run.set_defaults(handler=_run)
    gate = sub.add_parser("gate", help="exit non-zero when the latest run is below a threshold")
    gate.add_argument("--run", type=Path, help="one run directory (default: the latest run of each set)")
    gate.add_argument("--dataset", type=Path, action="append", help="an eval set file (default: every default set)")
    gate.set_defaults(handler=_gate)
    retrieval = sub.add_parser("retrieval", help="the retriever and the evidence alone: source, rank, facts, per set")
    retrieval.add_argument(
        "--dataset", type=Path, action="append", help="an eval set file (default: every default set)"
    )
    retrieval.add_argument("--show", action="store_true", help="one line per question: rank, facts, the evidence")
    retrieval.set_defaults(handler=_retrieval)
    sub.add_parser("adapter", help="base model vs an adapter: perplexity and the eval sets (ADAPTER --help)")
    make = sub.add_parser("make", help="draft an eval set from an export, for review")
    make.add_argument("--from", dest="source", type=Path, required=True)
    make.add_argument("--out", type=Path, default=Path("evals/datasets/drafted.yaml"))
    make.add_argument("--limit", type=int, default=40)
    make.set_defaults(handler=_make)
    for p in (run, gate):
        p.add_argument("--runs", type=Path, default=RUNS_DIR, help="where runs are saved")
        p.add_argument("--thresholds", type=Path, default=THRESHOLDS)
    args = parser.parse_args(argv)
    from errors import UserError

    try:
        return args.handler(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
