"""``python -m rl {collect,train,evaluate,benchmark,report}``: the Decision Transformer suite (Chen et al., 2021) with
Primal.+DT (Chen et al., NeurIPS 2023) on D4RL-layout data and gymnasium MuJoCo.
"""

from __future__ import annotations

import argparse
import sys

from rl import benchmark, collect, evaluate, report, train

COMMANDS = {
    "collect": (collect, "record D4RL-layout .hdf5 data from gymnasium MuJoCo with random and ARS-trained policies"),
    "train": (train, "train a Decision Transformer / Primal.+DT on offline data, then evaluate it"),
    "evaluate": (evaluate, "return-conditioned rollouts of a trained checkpoint, with D4RL normalised scores"),
    "benchmark": (benchmark, "train several models for the same time on one data set and compare with its mean return"),
    "report": (report, "write the results page (docs/results/rl.md) again from a finished benchmark's JSON"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m rl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, (module, summary) in COMMANDS.items():
        sub = commands.add_parser(name, help=summary, description=f"{summary}. {module.__doc__}",
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        COMMANDS[args.command][0].main(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
