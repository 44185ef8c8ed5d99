"""Machine-readable results next to human-readable logs: JSON, JSON lines and CSV."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any


def _plain(value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(data: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON (atomically), converting tensors and NumPy scalars."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_plain(data), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


class MetricLogger:
    """Appends one row of metrics per call to ``metrics.jsonl`` and ``metrics.csv`` in a run folder.

    The CSV header is the union of keys seen so far; the file is rewritten when a new key appears.
    """

    def __init__(self, folder: str | os.PathLike, enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.enabled = enabled
        self.rows: list[dict[str, Any]] = []
        if enabled:
            self.folder.mkdir(parents=True, exist_ok=True)

    @property
    def jsonl_path(self) -> Path:
        return self.folder / "metrics.jsonl"

    @property
    def csv_path(self) -> Path:
        return self.folder / "metrics.csv"

    def log(self, **metrics: Any) -> None:
        row = _plain(metrics)
        self.rows.append(row)
        if not self.enabled:
            return
        with self.jsonl_path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        self._write_csv()

    def load_existing(self) -> list[dict[str, Any]]:
        """Read rows of an earlier (interrupted) run, so a resumed run continues the same files."""
        if self.jsonl_path.is_file():
            self.rows = [json.loads(line) for line in self.jsonl_path.read_text().splitlines() if line.strip()]
        return self.rows

    def truncate(self, keep: int) -> None:
        """Keep only the first ``keep`` rows (used when resuming from an earlier checkpoint)."""
        self.rows = self.rows[:keep]
        if self.enabled:
            self.jsonl_path.write_text("".join(json.dumps(r) + "\n" for r in self.rows))
            self._write_csv()

    def _write_csv(self) -> None:
        keys: list[str] = []
        for row in self.rows:
            keys.extend(k for k in row if k not in keys)
        with self.csv_path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
