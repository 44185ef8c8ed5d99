"""core.engine.launch renders the suites' sbatch scripts (overrides and arguments) without a cluster."""

import shlex
import subprocess
from pathlib import Path

import pytest

from core.engine.launch import LaunchError, main, render, submit, sweep_runs

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("timeseries", "lra", "vision", "language", "rl")

SCRIPT = """#!/usr/bin/env bash
# a comment that mentions #SBATCH --nodes=9 but is not a directive
#SBATCH --job-name=demo
#SBATCH --nodes=1
#SBATCH --gres=gpu:1
#SBATCH --time=01:00:00
source common.sh
echo "$@"
"""


def directives(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#SBATCH")]


def command_args(text: str) -> list[str]:
    """The arguments of the rendered ``set --`` line."""
    line = next(line for line in text.splitlines() if line.startswith("set -- "))
    return shlex.split(line, comments=True)[2:]


def test_overrides_replace_existing_lines_and_add_new_ones():
    text = render(SCRIPT, {"--nodes": "4", "--partition": "gpu", "--exclusive": None}, [])
    assert directives(text) == ["#SBATCH --job-name=demo", "#SBATCH --nodes=4", "#SBATCH --gres=gpu:1",
                                "#SBATCH --time=01:00:00", "#SBATCH --partition=gpu", "#SBATCH --exclusive"]
    assert "set -- " not in text


def test_gpus_per_node_replaces_a_gres_request():
    text = render(SCRIPT, {"--gpus-per-node": "8"}, [])
    assert "#SBATCH --gpus-per-node=8" in directives(text)
    assert not any("gres" in line for line in directives(text))


def test_arguments_are_set_after_the_header_and_quoted():
    args = ["primal_deit_small_in1k", "/data/image net", "--lr", "5e-4", "it's"]
    text = render(SCRIPT, {}, args)
    lines = text.splitlines()
    set_line = next(i for i, line in enumerate(lines) if line.startswith("set -- "))
    assert lines[set_line - 1].startswith("#SBATCH --time") and lines[set_line + 1] == "source common.sh"
    assert command_args(text) == args
    echoed = subprocess.run(["bash", "-c", lines[set_line].split("  #")[0] + '; printf "%s\\n" "$@"'],
                            capture_output=True, text=True, check=True).stdout.splitlines()
    assert echoed == args


def test_a_script_without_interpreter_line_is_refused():
    with pytest.raises(LaunchError, match="interpreter line"):
        render("#SBATCH --nodes=1\necho hi\n", {}, [])


def test_dry_run_prints_a_suite_script_with_overrides_and_arguments(capsys):
    script = "vision/slurm/train_multi_node.sbatch"
    code = main([str(ROOT / script), "--nodes", "4", "--gpus-per-node", "8", "--time", "2:00:00",
                 "--sbatch", "constraint=a100", "--dry-run", "--", "primal_deit_small_in1k", "/data/imagenet",
                 "--batch-size", "128"])
    text = capsys.readouterr().out
    assert code == 0
    lines = directives(text)
    assert "#SBATCH --nodes=4" in lines and "#SBATCH --gpus-per-node=8" in lines
    assert "#SBATCH --time=2:00:00" in lines and "#SBATCH --constraint=a100" in lines
    assert "#SBATCH --nodes=2" not in lines and len([line for line in lines if "--nodes" in line]) == 1
    assert command_args(text) == ["primal_deit_small_in1k", "/data/imagenet", "--batch-size", "128"]
    assert "slurm_torchrun_nodes vision train" in text
    assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0


def test_array_from_counts_the_runs_of_a_sweep_file(tmp_path, capsys):
    sweep = tmp_path / "grid.txt"
    sweep.write_text("# learning rates\n--lr 1e-3\n\n--lr 5e-4 --seed 2\n  # done\n--lr '2e-3'\n")
    assert sweep_runs(sweep) == ["--lr 1e-3", "--lr 5e-4 --seed 2", "--lr '2e-3'"]
    assert main([str(ROOT / "rl/slurm/sweep.sbatch"), "--array-from", str(sweep), "--dry-run", "--", str(sweep)]) == 0
    text = capsys.readouterr().out
    assert "#SBATCH --array=0-2" in directives(text)
    assert command_args(text) == [str(sweep)]


@pytest.mark.parametrize("suite", SUITES)
def test_every_suite_has_single_node_multi_node_and_sweep_scripts(suite):
    folder = ROOT / suite / "slurm"
    single = folder / ("train.sbatch" if suite == "rl" else "train_single_node.sbatch")
    for script in (single, folder / "train_multi_node.sbatch", folder / "sweep.sbatch"):
        text = script.read_text()
        assert "scripts/slurm/common.sh" in text, f"{script} should source the shared helper"
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
        rendered = render(text, {"--time": "0:10:00"}, ["a", "b"])
        assert "#SBATCH --time=0:10:00" in directives(rendered) and command_args(rendered) == ["a", "b"]


def test_errors_name_the_problem(tmp_path, capsys, monkeypatch):
    assert main([str(tmp_path / "missing.sbatch"), "--dry-run"]) == 2
    assert "sbatch script" in capsys.readouterr().err
    script = tmp_path / "job.sbatch"
    script.write_text(SCRIPT)
    assert main([str(script), "--array", "0-3", "--array-from", str(tmp_path / "none.txt"), "--dry-run"]) == 2
    assert "either --array or --array-from" in capsys.readouterr().err
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LaunchError, match="not installed or not on PATH.*--dry-run"):
        submit(SCRIPT)
    assert main([str(script)]) == 2
    assert "sbatch is not installed" in capsys.readouterr().err


def helper(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """Run bash ``command`` after sourcing scripts/slurm/common.sh (no SLURM needed)."""
    import os
    import sys

    outside = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k != "NPROC_PER_NODE"}
    environment = {**outside, "PYTHON": sys.executable, **env}
    return subprocess.run(["bash", "-c", f'source "{ROOT}/scripts/slurm/common.sh"; {command}'], capture_output=True,
                          text=True, env=environment, cwd=tmp_path)


def test_sweep_helper_reads_one_run_per_line_with_shell_quoting(tmp_path):
    sweep = tmp_path / "grid.txt"
    sweep.write_text("# comment\n--lr 1e-3\n\n--name 'two words' --seed 2\n")
    done = helper(f'slurm_sweep_args {sweep} >/dev/null; printf "%s|" "${{SWEEP_ARGS[@]}}"; echo "$SWEEP_NAME"',
                  tmp_path, SLURM_ARRAY_TASK_ID="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "--name|two words|--seed|2|grid-1"
    past = helper(f"slurm_sweep_args {sweep} 2", tmp_path)
    assert past.returncode == 2 and "holds 2 runs: submit with --array=0-1" in past.stderr


def test_sweep_tasks_share_the_runs_round_robin(tmp_path):
    sweep = tmp_path / "grid.txt"
    sweep.write_text("\n".join(f"--run {i}" for i in range(5)) + "\n")
    done = helper(f"slurm_sweep_worker {sweep} echo task", tmp_path, SLURM_PROCID="1", SLURM_NTASKS="2")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stdout.splitlines() if line.startswith("task")] == ["task --run 1", "task --run 3"]


def test_procs_per_node_follow_the_gpus_unless_overridden(tmp_path):
    assert helper("slurm_procs_per_node", tmp_path, SLURM_GPUS_ON_NODE="4").stdout.strip() == "4"
    assert helper("slurm_procs_per_node", tmp_path, SLURM_GPUS_ON_NODE="4", NPROC_PER_NODE="2").stdout.strip() == "2"
    assert helper("slurm_procs_per_node", tmp_path).stdout.strip() == "1"
    assert helper("slurm_workers_per_proc", tmp_path, SLURM_GPUS_ON_NODE="4", SLURM_CPUS_PER_TASK="32").stdout.strip() == "8"
