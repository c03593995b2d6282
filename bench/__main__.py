"""`python -m bench reply`: run a benchmark and print its figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("name", choices=["reply"], help="which benchmark to run")
    parser.add_argument("--out", type=Path, default=Path("bench/results"), help="where to save the JSON figures")
    args = parser.parse_args(argv)
    from bench import reply

    print(reply.report(reply.run(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
