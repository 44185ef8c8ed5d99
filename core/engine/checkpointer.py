"""A run folder's checkpoints: numbered, atomic, pruned, and resumed from the latest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from core.engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint


class Checkpointer:
    """Keeps ``ckpt_<step>.pt`` files in ``folder`` (the newest ``keep`` of them) plus named ones (``best.pt``).

    Args:
        folder: run folder.
        keep: how many numbered checkpoints to keep. Default: 2.
        enabled: write files (False on non-zero ranks); reading works everywhere.
    """

    def __init__(self, folder: str | os.PathLike, keep: int = 2, enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.enabled = enabled

    def save(self, step: int, state: dict[str, Any]) -> Path | None:
        """Write ``ckpt_<step>.pt`` atomically and prune older numbered checkpoints."""
        if not self.enabled:
            return None
        path = save_checkpoint({**state, "step": step}, self.folder / f"ckpt_{step}.pt")
        numbered = sorted(self.folder.glob("ckpt_*.pt"), key=lambda p: int(p.stem.split("_")[-1]))
        for old in numbered[: -self.keep] if self.keep > 0 else []:
            old.unlink(missing_ok=True)
        return path

    def save_named(self, name: str, state: dict[str, Any]) -> Path | None:
        """Write ``<name>.pt`` atomically (e.g. the best-validation model)."""
        return save_checkpoint(state, self.folder / f"{name}.pt") if self.enabled else None

    def latest(self) -> dict[str, Any] | None:
        """The newest numbered checkpoint's state, or None for a fresh run."""
        path = latest_checkpoint(self.folder, "ckpt_*.pt")
        return None if path is None else load_checkpoint(path)
