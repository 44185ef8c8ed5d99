"""Preemption-safe training with the engine: an interrupted-and-resumed run reproduces the uninterrupted one,
the signal handler fires, and two-process gloo DDP keeps ranks in sync."""

import os
import signal
import subprocess
import sys
import textwrap

import torch
from torch.utils.data import TensorDataset

from core.engine import Checkpointer, PreemptionHandler, make_loader, seed_everything


def train(folder, epochs, stop_after_steps=None):
    """A small regression run that checkpoints every step and resumes from the latest checkpoint."""
    seed_everything(0)
    data = TensorDataset(torch.randn(40, 3), torch.randn(40, 1))
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    ckpt = Checkpointer(folder)
    state = ckpt.latest()
    step, start_epoch, losses = 0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["rng"])
        step, start_epoch, losses = state["step"], state["epoch"], state["losses"]
    for epoch in range(start_epoch, epochs):
        loader = make_loader(data, 8, shuffle=True, seed=0, epoch=epoch)
        skip = step - epoch * len(loader)
        for i, (x, y) in enumerate(loader):
            if i < skip:
                continue
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            step += 1
            losses.append(loss.item())
            finished = i + 1 == len(loader)
            ckpt.save(step, {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
                             "epoch": epoch + 1 if finished else epoch, "losses": losses})
            if stop_after_steps is not None and step == stop_after_steps:
                return losses, model
    return losses, model


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    full, full_model = train(tmp_path / "full", epochs=3)
    partial, _ = train(tmp_path / "cut", epochs=3, stop_after_steps=7)  # mid-epoch interruption
    assert len(partial) == 7
    resumed, resumed_model = train(tmp_path / "cut", epochs=3)
    assert resumed == full
    for a, b in zip(full_model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert len(list((tmp_path / "cut").glob("ckpt_*.pt"))) == 2  # pruned to the newest two


def test_preemption_handler_catches_the_signal_and_restores():
    before = signal.getsignal(signal.SIGUSR1)
    with PreemptionHandler() as handler:
        assert not handler.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handler.requested and handler.received == signal.SIGUSR1
    assert signal.getsignal(signal.SIGUSR1) == before
    assert PreemptionHandler.requeue() is False or "SLURM_JOB_ID" in os.environ


DDP_SCRIPT = textwrap.dedent(
    """
    import torch, torch.distributed as dist
    from torch.utils.data import TensorDataset
    from core.engine import barrier, init_distributed, make_loader, reduce_mean, reduce_sum, wrap_model, seed_everything
    ctx = init_distributed(torch.device("cpu"))
    seed_everything(0)
    model = wrap_model(torch.nn.Linear(4, 1), ctx)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    loader = make_loader(data, 4, shuffle=True, seed=1, context=ctx)
    seen = [len(loader.sampler)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in loader:
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(); loss.backward(); opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, flat)
    assert torch.equal(gathered[0], gathered[1]), "ranks diverged"
    assert reduce_mean(float(ctx.rank)) == 0.5
    assert reduce_sum(float(ctx.rank + 1)) == 3.0  # 1 + 2
    barrier()
    print(f"rank {ctx.rank}/{ctx.world_size} ok backend={ctx.backend} samples={seen[0]}")
    dist.destroy_process_group()
    """
)


def test_two_process_gloo_ddp_stays_in_sync(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout + done.stderr
    assert "rank 0/2 ok backend=gloo samples=8" in out and "rank 1/2 ok backend=gloo samples=8" in out
