"""One rank of multi-process CPU training with fairseq (Primal-Attention language modelling, Chen et al.,
NeurIPS 2023), started by ``torchrun --standalone --nproc_per_node=N -m language.cpu_worker FAIRSEQ_FLAGS``.

fairseq's own launcher counts CUDA devices (``--distributed-world-size 2 --cpu`` asserts "have 0 available devices"
and plain torchrun divides by ``torch.cuda.device_count()``), so each rank is told its rank, the world size and the
gloo backend explicitly. On GPU machines use ``fairseq-train`` directly: it spawns one process per GPU.
"""

from __future__ import annotations

import os
import sys


def worker_argv(argv: list[str], environ: dict[str, str]) -> list[str]:
    """fairseq-train flags for this rank, from torchrun's ``RANK`` and ``WORLD_SIZE``.

    Raises:
        RuntimeError: when not started by torchrun.
    """
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in environ]
    if missing:
        raise RuntimeError(f"language.cpu_worker must be started by torchrun (missing {', '.join(missing)})")
    flags = [
        "--cpu", "--distributed-init-method", "env://", "--distributed-rank", environ["RANK"],
        "--distributed-world-size", environ["WORLD_SIZE"], "--distributed-no-spawn",
        "--distributed-backend", "gloo", "--ddp-backend", "legacy_ddp",
    ]
    return [a for a in argv if a != "--cpu"] + flags


def main() -> None:
    from fairseq_cli.train import cli_main

    sys.argv = [sys.argv[0], *worker_argv(sys.argv[1:], dict(os.environ))]
    cli_main()


if __name__ == "__main__":
    main()
