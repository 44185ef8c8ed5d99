"""Submit a sweep of commands to SLURM from Python through submitit (one job per command, as a job array).

    python -m core.engine.sweep --folder runs/sweep --partition gpu --gpus-per-node 1 -- \\
        "python -m timeseries --dataset JapaneseVowels --model primalformer --seed {seed}" --grid seed=1,2,3

``--dry-run`` prints the expanded commands and the job parameters without submitting.
"""

from __future__ import annotations

import argparse
import itertools
import shlex
import sys
from pathlib import Path


def expand_grid(template: str, grid: dict[str, list[str]]) -> list[str]:
    """Every combination of the grid's values substituted into ``template``'s ``{name}`` fields."""
    if not grid:
        return [template]
    names = sorted(grid)
    commands = []
    for values in itertools.product(*(grid[name] for name in names)):
        commands.append(template.format(**dict(zip(names, values))))
    return commands


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["seed=1,2", "model=a,b"]`` -> ``{"seed": ["1", "2"], "model": ["a", "b"]}``."""
    grid = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"grid entries look like name=v1,v2; got {item!r}")
        name, values = item.split("=", 1)
        grid[name] = [v for v in values.split(",") if v]
    return grid


def make_executor(folder: str | Path, *, partition: str | None, nodes: int, gpus_per_node: int, cpus_per_task: int,
                  timeout_min: int, array_parallelism: int, cluster: str | None = None):
    """A submitit executor with the usual knobs; ``cluster="debug"`` runs locally in-process."""
    import submitit

    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    params = dict(nodes=nodes, gpus_per_node=gpus_per_node, cpus_per_task=cpus_per_task, timeout_min=timeout_min,
                  slurm_array_parallelism=array_parallelism, slurm_signal_delay_s=120)
    if partition:
        params["slurm_partition"] = partition
    executor.update_parameters(**{k: v for k, v in params.items() if executor.cluster == "slurm" or not k.startswith("slurm")})
    return executor


def submit_commands(commands: list[str], executor) -> list:
    """Submit each shell command as one array task; returns the submitit jobs."""
    from submitit.helpers import CommandFunction

    functions = [CommandFunction(shlex.split(command)) for command in commands]
    with executor.batch():
        jobs = [executor.submit(function) for function in functions]
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.engine.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("template", help="command with {name} fields filled from --grid")
    parser.add_argument("--grid", nargs="*", default=[], help="name=v1,v2,... entries; all combinations are submitted")
    parser.add_argument("--folder", default="runs/sweep", help="submitit log folder (default runs/sweep)")
    parser.add_argument("--partition", default=None, help="SLURM partition")
    parser.add_argument("--nodes", type=int, default=1, help="nodes per job (default 1)")
    parser.add_argument("--gpus-per-node", type=int, default=0, help="GPUs per node (default 0: CPU jobs)")
    parser.add_argument("--cpus-per-task", type=int, default=2, help="CPUs per task (default 2)")
    parser.add_argument("--timeout-min", type=int, default=60, help="time limit per job in minutes (default 60)")
    parser.add_argument("--parallel", type=int, default=16, help="array tasks running at once (default 16)")
    parser.add_argument("--dry-run", action="store_true", help="print commands and the sbatch script, submit nothing")
    args = parser.parse_args(argv)
    commands = expand_grid(args.template, parse_grid(args.grid))
    for i, command in enumerate(commands):
        print(f"[{i}] {command}")
    if args.dry_run:
        print(f"would submit {len(commands)} array task(s): nodes={args.nodes} gpus_per_node={args.gpus_per_node} "
              f"cpus_per_task={args.cpus_per_task} time={args.timeout_min}min partition={args.partition} "
              f"parallel={args.parallel} logs={args.folder}")
        return 0
    executor = make_executor(args.folder, partition=args.partition, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                             cpus_per_task=args.cpus_per_task, timeout_min=args.timeout_min, array_parallelism=args.parallel)
    jobs = submit_commands(commands, executor)
    print("submitted: " + " ".join(job.job_id for job in jobs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
