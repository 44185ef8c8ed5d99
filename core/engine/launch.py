"""Render a suite's sbatch script with resource overrides and its arguments, then print it or submit it.

    python -m core.engine.launch vision/slurm/train_multi_node.sbatch --nodes 4 --gpus-per-node 8 --dry-run -- \\
        primal_deit_small_in1k /data/imagenet --batch-size 128

The rendered script is the original with each override replacing the ``#SBATCH`` line of the same option (or added
after the last one) and, right after the ``#SBATCH`` block, ``set -- ARGS`` holding the arguments after ``--``, so the
printed text is exactly what runs. Without ``--dry-run`` it goes to ``sbatch`` on standard input; the job's
``SLURM_SUBMIT_DIR`` is the current directory, so submit from the repository root.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

SBATCH = re.compile(r"^#SBATCH\s+(--?[\w-]+)(?:[=\s]\s*(.*?))?\s*$")

# flags of this command that become #SBATCH options (flag dest -> sbatch option)
RESOURCE_FLAGS = {
    "nodes": "--nodes",
    "ntasks_per_node": "--ntasks-per-node",
    "gpus_per_node": "--gpus-per-node",
    "cpus_per_task": "--cpus-per-task",
    "mem": "--mem",
    "time": "--time",
    "partition": "--partition",
    "account": "--account",
    "qos": "--qos",
    "job_name": "--job-name",
    "array": "--array",
    "output": "--output",
}


class LaunchError(RuntimeError):
    """A problem with the script, the overrides or the submission, explained for the user."""


def sweep_runs(path: str | Path) -> list[str]:
    """The runs of a sweep file: its lines that are neither blank nor comments (as ``scripts/slurm/common.sh``)."""
    path = Path(path)
    if not path.is_file():
        raise LaunchError(f"sweep file {path} not found: expected a text file with one run (its flags) per line")
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]


def parse_options(items: list[str]) -> dict[str, str | None]:
    """``["--mem=8G", "exclusive"]`` -> ``{"--mem": "8G", "--exclusive": None}``."""
    options: dict[str, str | None] = {}
    for item in items:
        name, sep, value = item.lstrip("-").partition("=")
        if not name:
            raise LaunchError(f"an --sbatch option looks like NAME=VALUE or NAME (e.g. mem=8G), got {item!r}")
        options[f"--{name}"] = value if sep else None
    return options


def _directive(option: str, value: str | None) -> str:
    return f"#SBATCH {option}" if value is None else f"#SBATCH {option}={value}"


def _header_end(lines: list[str]) -> int:
    """Index of the first line sbatch no longer reads directives from (first command line)."""
    for index, line in enumerate(lines):
        stripped = line.strip()
        if index == 0 and stripped.startswith("#!"):
            continue
        if stripped and not stripped.startswith("#"):
            return index
    return len(lines)


def render(script_text: str, overrides: dict[str, str | None], args: list[str]) -> str:
    """The script with ``overrides`` applied to its ``#SBATCH`` header and ``set -- args`` after it.

    Args:
        script_text (str): the sbatch script.
        overrides (dict): sbatch option (``"--nodes"``) -> value, or None for a flag without value.
        args (list[str]): the script's arguments (``$1 ...``), quoted for bash in the output.
    """
    lines = script_text.splitlines()
    if not lines or not lines[0].startswith("#!"):
        raise LaunchError("an sbatch script must start with an interpreter line such as '#!/usr/bin/env bash'")
    end = _header_end(lines)
    remaining = dict(overrides)
    if "--gpus-per-node" in remaining:  # one way of asking for GPUs: a --gres=gpu line would contradict the override
        lines[:end] = [line for line in lines[:end] if not re.match(r"^#SBATCH\s+--gres[=\s]gpu", line)]
        end = _header_end(lines)
    last_directive = 0
    for index in range(end):
        match = SBATCH.match(lines[index])
        if not match:
            continue
        last_directive = index
        if match.group(1) in remaining:
            option = match.group(1)
            lines[index] = _directive(option, remaining.pop(option))
    added = [_directive(option, value) for option, value in remaining.items()]
    insert_at = (last_directive + 1) if last_directive else min(1, len(lines))
    lines[insert_at:insert_at] = added
    end = _header_end(lines)
    if args:
        lines.insert(end, "set -- " + shlex.join(args) + "  # arguments given to core.engine.launch")
    return "\n".join(lines) + "\n"


def submit(text: str, sbatch: str = "sbatch") -> str:
    """Submit a rendered script through ``sbatch`` on standard input; returns sbatch's answer (the job id)."""
    executable = shutil.which(sbatch)
    if executable is None:
        raise LaunchError(f"{sbatch} is not installed or not on PATH: run this on a SLURM login node, or add --dry-run "
                          "to print the script instead of submitting it")
    for line in text.splitlines():
        match = SBATCH.match(line)
        if match and match.group(1) in ("--output", "--error", "-o", "-e") and match.group(2):
            folder = Path(match.group(2)).parent  # sbatch opens the log file before the script runs
            if "%" not in str(folder):
                folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([executable, "--parsable"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        raise LaunchError(f"sbatch refused the script (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout.strip()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m core.engine.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", type=Path, help="the sbatch script, e.g. vision/slurm/train_single_node.sbatch")
    parser.add_argument("--nodes", help="number of nodes (#SBATCH --nodes)")
    parser.add_argument("--ntasks-per-node", help="tasks per node (#SBATCH --ntasks-per-node)")
    parser.add_argument("--gpus-per-node", help="GPUs per node; replaces any --gres=gpu line (#SBATCH --gpus-per-node)")
    parser.add_argument("--cpus-per-task", help="CPUs per task (#SBATCH --cpus-per-task)")
    parser.add_argument("--mem", help="memory per node, e.g. 64G (#SBATCH --mem)")
    parser.add_argument("--time", help="time limit, e.g. 12:00:00 (#SBATCH --time)")
    parser.add_argument("--partition", help="partition (#SBATCH --partition)")
    parser.add_argument("--account", help="account to charge (#SBATCH --account)")
    parser.add_argument("--qos", help="quality of service (#SBATCH --qos)")
    parser.add_argument("--job-name", help="job name (#SBATCH --job-name)")
    parser.add_argument("--array", help="array indices, e.g. 0-9 or 0-99%%8 (#SBATCH --array)")
    parser.add_argument("--array-from", metavar="SWEEP_FILE", type=Path,
                        help="set --array to one index per run of this sweep file (0 to runs - 1)")
    parser.add_argument("--output", help="log file pattern, e.g. runs/slurm/%%x-%%j.out (#SBATCH --output)")
    parser.add_argument("--sbatch", action="append", default=[], metavar="NAME[=VALUE]",
                        help="any other #SBATCH option, e.g. --sbatch constraint=a100 (repeatable)")
    parser.add_argument("--dry-run", action="store_true", help="print the rendered script and submit nothing")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    own, script_args = argv[:split], argv[split + 1:]
    args = build_parser().parse_args(own)
    try:
        if not args.script.is_file():
            raise LaunchError(f"sbatch script {args.script} not found: expected a path such as "
                              "vision/slurm/train_single_node.sbatch (relative to the repository root)")
        overrides = {option: getattr(args, dest) for dest, option in RESOURCE_FLAGS.items()
                     if getattr(args, dest) is not None}
        if args.array_from is not None:
            if args.array is not None:
                raise LaunchError("give either --array or --array-from, not both")
            runs = sweep_runs(args.array_from)
            if not runs:
                raise LaunchError(f"sweep file {args.array_from} holds no runs (only blank or # lines)")
            overrides["--array"] = f"0-{len(runs) - 1}"
        overrides.update(parse_options(args.sbatch))
        text = render(args.script.read_text(), overrides, script_args)
        if args.dry_run:
            sys.stdout.write(text)
            return 0
        print(f"submitted {args.script}: job {submit(text)}")
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
