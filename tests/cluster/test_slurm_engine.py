"""core.engine under a real SLURM cluster: two tasks agree through gloo DDP; a signalled job checkpoints,
requeues itself and resumes to the same result."""

import sys
import textwrap
import time

from tests.cluster.slurm_utils import submit, wait

DDP = textwrap.dedent(
    """
    import torch, torch.distributed as dist
    from core.engine import init_distributed, reduce_mean, wrap_model, seed_everything
    ctx = init_distributed(torch.device("cpu"))
    seed_everything(ctx.rank)  # different data per rank, same model after DDP sync
    model = wrap_model(torch.nn.Linear(3, 1), ctx)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = model(torch.randn(5, 3)).pow(2).mean()
    loss.backward(); opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    both = [torch.zeros_like(flat) for _ in range(ctx.world_size)]
    dist.all_gather(both, flat)
    agree = torch.equal(both[0], both[1])
    print(f"rank={ctx.rank} world={ctx.world_size} agree={agree} mean_rank={reduce_mean(float(ctx.rank))}", flush=True)
    dist.destroy_process_group()
    """
)

REQUEUE = textwrap.dedent(
    """
    import os, sys, time, json
    import torch
    from core.engine import Checkpointer, PreemptionHandler
    folder = sys.argv[1]
    ckpt = Checkpointer(folder)
    state = ckpt.latest() or {"step": 0, "total": 0}
    restarts = int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    print(f"start step={state['step']} restarts={restarts}", flush=True)
    with PreemptionHandler() as handler:
        step, total = state["step"], state["total"]
        while step < 40:
            step += 1
            total += step
            ckpt.save(step, {"total": total})
            if handler.requested:
                print(f"signal at step={step}: checkpointed, requeueing", flush=True)
                PreemptionHandler.requeue()
                sys.exit(0)
            time.sleep(0.25 if restarts == 0 else 0.0)
    json.dump({"total": total, "restarts": restarts}, open(os.path.join(folder, "done.json"), "w"))
    print("finished", flush=True)
    """
)


def test_two_slurm_tasks_agree_through_ddp(slurm_cluster, tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    out = tmp_path / "ddp.out"
    wrap = f"srun --ntasks=2 env MASTER_PORT=29611 {sys.executable} {script}"
    job = submit(["--ntasks=2", "--cpus-per-task=1", f"--output={out}", f"--chdir={tmp_path}", "--wrap", wrap],
                 slurm_cluster)
    state = wait(job, slurm_cluster)
    text = out.read_text() if out.exists() else "no output"
    assert state == "COMPLETED", text[-2000:]
    assert "rank=0 world=2 agree=True mean_rank=0.5" in text, text[-2000:]
    assert "rank=1 world=2 agree=True mean_rank=0.5" in text, text[-2000:]


def test_signalled_job_checkpoints_requeues_and_resumes(slurm_cluster, tmp_path):
    import json
    import subprocess

    script = tmp_path / "loop.py"
    script.write_text(REQUEUE)
    out = tmp_path / "loop.out"
    run_dir = tmp_path / "run"
    job = submit(["--requeue", "--open-mode=append", f"--output={out}", f"--chdir={tmp_path}",
                  "--wrap", f"exec {sys.executable} {script} {run_dir}"], slurm_cluster)
    deadline = time.time() + 60
    while time.time() < deadline and not list(run_dir.glob("ckpt_*.pt")):
        time.sleep(0.2)
    time.sleep(1.0)
    subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=slurm_cluster, check=True)
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "done.json").exists():
        show = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True, env=slurm_cluster)
        if "JobState=PENDING" in show.stdout:
            # SLURM holds a requeued job for about two minutes (BeginTime); make it eligible now rather than wait
            subprocess.run(["scontrol", "release", job], capture_output=True, env=slurm_cluster)
            subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], capture_output=True, env=slurm_cluster)
        time.sleep(1.0)
    text = out.read_text()
    assert (run_dir / "done.json").exists(), text
    result = json.loads((run_dir / "done.json").read_text())
    assert result["total"] == sum(range(1, 41))  # the resumed run continued, neither skipping nor repeating steps
    assert result["restarts"] >= 1 and "requeueing" in text and "restarts=1" in text


def test_submitit_sweep_runs_every_grid_point(slurm_cluster, tmp_path, monkeypatch):
    from core.engine.sweep import expand_grid, make_executor, submit_commands

    for key, value in slurm_cluster.items():
        monkeypatch.setenv(key, value)
    commands = expand_grid(f"{sys.executable} -c 'print({{a}} * {{b}})'", {"a": ["2", "3"], "b": ["5"]})
    executor = make_executor(tmp_path, partition=None, nodes=1, gpus_per_node=0, cpus_per_task=1, timeout_min=5,
                             array_parallelism=2)
    assert executor.cluster == "slurm"
    jobs = submit_commands(commands, executor)
    outputs = sorted(job.result().strip() for job in jobs)
    assert outputs == ["10", "15"]
