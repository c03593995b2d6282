"""`python -m evals adapter ADAPTER`: what an adapter changes, perplexity and answers.

The validation perplexity of the base model and of the adapter and a few replies side by side
(`training.evaluate`), then each eval set answered by the whole bot without and with the adapter,
metric by metric, so an admin sees whether training helped the answers as well as the perplexity.
`--no-evals` stops after the perplexity (as `python -m training.evaluate` does).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from evals.dataset import EVAL_SEED, TUNED_SETS


def compare_evals(
    settings, adapter: Path, sets: list[Path], limit: int | None = None, runs_dir: Path | None = None, progress=None
) -> tuple[dict[str, tuple[dict, dict]], list[str]]:
    """Each eval set answered by the bot without and with the adapter: {set: (means without, means with)}.

    Sets that cannot run here (their channel's export is absent) are returned as lines saying why.
    Both runs use EVAL_SEED when SEED is unset, as `python -m evals run` does, and are saved as runs.
    """
    from app.storage import lock_data_dir
    from evals.dataset import load_dataset
    from evals.runner import RUNS_DIR, run_eval, settings_for

    if settings.SEED is None:
        settings = settings.model_copy(update={"SEED": EVAL_SEED})
    results, skipped = {}, []
    for path in sets:
        eval_set = load_dataset(path)
        if eval_set.missing:
            skipped.append(f"{eval_set.name}: SKIPPED ({eval_set.missing})")
            continue
        means = []
        for adapter_path in (None, adapter):
            run_settings = settings.model_copy(update={"ADAPTER_PATH": adapter_path})
            lock = lock_data_dir(settings_for(run_settings, eval_set), "`python -m evals adapter`")
            try:
                run = run_eval(
                    run_settings,
                    eval_set,
                    runs_dir=runs_dir or RUNS_DIR,
                    limit=limit,
                    progress=progress or (lambda line: None),
                )
            finally:
                if lock is not None:
                    lock.release()
            means.append(run.means)
        results[eval_set.name] = (means[0], means[1])
    return results, skipped


def main(argv: list[str] | None = None) -> int:
    from config.logs import setup_logging
    from config.settings import load_settings
    from errors import UserError
    from training.evaluate import add_arguments, compare

    parser = argparse.ArgumentParser(
        prog="python -m evals adapter", description="Base model vs adapter: validation perplexity and the eval sets."
    )
    add_arguments(parser)
    parser.add_argument(
        "--eval-set",
        type=Path,
        action="append",
        dest="eval_sets",
        metavar="YAML",
        help="an eval set to answer without and with the adapter (repeatable; default: the tuned sets)",
    )
    parser.add_argument("--eval-limit", type=int, help="answer only the first N questions of each eval set")
    parser.add_argument("--no-evals", action="store_true", help="validation perplexity and replies only")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        setup_logging("WARNING")
        comparison = compare(settings, args.adapter, args.data, args.limit, engine=args.engine)
        if not args.no_evals:
            settings = settings.model_copy(update={"ENGINE": args.engine} if args.engine else {})
            comparison.evals, comparison.skipped = compare_evals(
                settings,
                args.adapter,
                args.eval_sets or list(TUNED_SETS),
                args.eval_limit,
                progress=lambda line: print(line, file=sys.stderr),
            )
        print(comparison.summary())
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
