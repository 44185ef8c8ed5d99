"""Fixtures for the timeseries suite: small generated ``.ts`` files in the UEA archive layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def keep_subnormals_after_each_test():
    """``python -m timeseries`` flushes subnormals process-wide; in the test process that must not leak."""
    yield
    torch.set_flush_denormal(False)


def format_ts(series: list[np.ndarray], labels: list[str], classes: list[str], name: str = "Toy") -> str:
    """The text of a ``.ts`` file holding ``(T_i, C)`` arrays (NaN written as '?')."""
    channels = series[0].shape[1]
    equal = len({len(s) for s in series}) == 1
    lines = [
        "# generated for tests",
        f"@problemName {name}",
        "@timeStamps false",
        f"@missing {'true' if any(np.isnan(s).any() for s in series) else 'false'}",
        f"@univariate {'true' if channels == 1 else 'false'}",
        f"@dimensions {channels}",
        f"@equalLength {'true' if equal else 'false'}",
        f"@classLabel true {' '.join(classes)}",
        "@data",
    ]
    for s, label in zip(series, labels):
        dims = [",".join("?" if np.isnan(v) else repr(float(v)) for v in s[:, c]) for c in range(channels)]
        lines.append(":".join(dims) + f":{label}")
    return "\n".join(lines) + "\n"


def make_dataset(root: Path, name: str, rng: np.random.Generator, train: int = 24, test: int = 18, channels: int = 3,
                 lengths: tuple[int, int] = (5, 12), classes: int = 3) -> dict:
    """Write ``<root>/<name>/<name>_{TRAIN,TEST}.ts`` with class-dependent series; return what was written."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"c{i}" for i in range(classes)]
    written = {}
    for split, count in (("TRAIN", train), ("TEST", test)):
        series, labels = [], []
        for i in range(count):
            k = i % classes
            t = int(rng.integers(lengths[0], lengths[1] + 1))
            s = rng.normal(loc=2.0 * k, scale=1.0, size=(t, channels))
            series.append(s)
            labels.append(names[k])
        (folder / f"{name}_{split}.ts").write_text(format_ts(series, labels, names, name))
        written[split] = (series, labels)
    return written


@pytest.fixture
def ts_text():
    """:func:`format_ts`, for tests that write their own files."""
    return format_ts


@pytest.fixture
def toy_root(tmp_path: Path) -> tuple[Path, dict]:
    """A data root holding one generated data set "Toy"."""
    written = make_dataset(tmp_path, "Toy", np.random.default_rng(0))
    return tmp_path, written
