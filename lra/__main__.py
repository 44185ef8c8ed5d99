"""``python -m lra``: generate, prepare, train and time the Long Range Arena suite (see docs/lra.md)."""

from __future__ import annotations

import argparse
import sys

import torch.distributed as dist

from lra import benchmark, efficiency, generate, prepare, summary, train
from lra.data.arrays import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lra",
        description="Long Range Arena and PSF's synthetic tasks on the core attention library "
        "(Primal-Attention, Chen et al., NeurIPS 2023, Tables 2-3).",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    generate.add_parser(subparsers)
    prepare.add_parser(subparsers)
    train.add_parser(subparsers)
    efficiency.add_parser(subparsers)
    efficiency.add_table_parser(subparsers)
    summary.add_parser(subparsers)
    benchmark.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (DataError, FileNotFoundError, ValueError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
