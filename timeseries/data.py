"""UEA data sets as padded tensors: locate the ``.ts`` files, interpolate gaps, standardise, pad, split.

The preprocessing follows the mvts/Flowformer pipeline used by Primal-Attention (Chen et al., NeurIPS 2023,
section 4.1): missing values are linearly interpolated per series, features are standardised with a mean and
standard deviation fitted on the training split only, and series are zero-padded (or clipped) to the longest
training series, with a mask marking real steps.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from timeseries.tsfile import read_ts

PAPER_DATASETS = (
    "EthanolConcentration",
    "FaceDetection",
    "Handwriting",
    "Heartbeat",
    "JapaneseVowels",
    "PEMS-SF",
    "SelfRegulationSCP1",
    "SelfRegulationSCP2",
    "SpokenArabicDigits",
    "UWaveGestureLibrary",
)
PROTOCOLS = ("paper", "holdout")


def sktime_data_root() -> Path:
    """The folder of data sets shipped inside the installed sktime package, found without importing sktime (about
    1.7 s; :func:`timeseries.tsfile.read_ts` imports it when a file is read).

    Raises:
        ModuleNotFoundError: if sktime is not installed.
    """
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("sktime is not installed; it reads the .ts files and ships JapaneseVowels: "
                                  "pip install sktime", name="sktime")
    return Path(spec.submodule_search_locations[0]).resolve() / "datasets" / "data"


def find_dataset_files(name: str, data_dir: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """Paths of ``<name>_TRAIN.ts`` and ``<name>_TEST.ts``.

    Looks in ``<data_dir>/<name>/`` (the Multivariate2018_ts layout), then ``<data_dir>/``, then the data
    shipped with sktime (JapaneseVowels and BasicMotions).

    Raises:
        FileNotFoundError: naming every place searched and how to get the data.
    """
    folders = []
    if data_dir is not None:
        folders += [Path(data_dir) / name, Path(data_dir)]
    folders.append(sktime_data_root() / name)
    for folder in folders:
        train, test = folder / f"{name}_TRAIN.ts", folder / f"{name}_TEST.ts"
        if train.is_file() and test.is_file():
            return train, test
    searched = ", ".join(str(f) for f in folders)
    raise FileNotFoundError(
        f"data set {name!r} not found (looked for {name}_TRAIN.ts and {name}_TEST.ts in {searched}). "
        "Only JapaneseVowels and BasicMotions ship with sktime; for the others download Multivariate2018_ts.zip "
        "from timeseriesclassification.com, unzip it and pass --data-dir <folder holding one folder per data set>"
    )


def interpolate_missing(series: np.ndarray) -> np.ndarray:
    """Linearly interpolate NaNs along time in each channel, holding the first/last value at the ends.

    Args:
        series: ``(T, C)``.

    Returns:
        np.ndarray: ``(T, C)`` without NaNs (a channel with no value at all becomes 0).
    """
    series = np.array(series, dtype=np.float64, copy=True)
    steps = np.arange(series.shape[0])
    for c in range(series.shape[1]):
        column = series[:, c]
        missing = np.isnan(column)
        if not missing.any():
            continue
        if missing.all():
            column[:] = 0.0
            continue
        column[missing] = np.interp(steps[missing], steps[~missing], column[~missing])
    return series


@dataclass(frozen=True)
class Standardizer:
    """Per-feature standardisation ``(x - mean) / (std + eps)`` fitted on training series.

    Attributes:
        mean: ``(C,)``.
        std: ``(C,)`` (population standard deviation over all training time steps).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, series: list[np.ndarray]) -> Standardizer:
        """Fit on a list of ``(T_i, C)`` arrays (every real time step counts once)."""
        stacked = np.concatenate(series, axis=0)
        return cls(mean=stacked.mean(axis=0), std=stacked.std(axis=0))

    def transform(self, series: list[np.ndarray]) -> list[np.ndarray]:
        eps = np.finfo(np.float64).eps
        return [(s - self.mean) / (self.std + eps) for s in series]


@dataclass
class SeriesSplit:
    """One split as padded tensors.

    Attributes:
        values: ``(M, L, C)`` float32, zero after each series' end.
        lengths: ``(M,)`` int64, real steps per series (at most L).
        labels: ``(M,)`` int64 class indices.
    """

    values: torch.Tensor
    lengths: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.values.shape[0]

    @property
    def mask(self) -> torch.Tensor:
        """``(M, L)`` bool, True = real step."""
        return torch.arange(self.values.shape[1])[None, :] < self.lengths[:, None]


@dataclass
class UEAData:
    """A data set ready for training.

    Attributes:
        name: data set name.
        protocol: "paper" (validation = the test file) or "holdout" (validation split from the training file).
        train, val, test: the splits; in the paper protocol ``val`` is ``test``.
        classes: label strings in index order.
        max_len: L, the longest training series; longer validation/test series are clipped to it.
        num_features: C.
        standardizer: the normalisation fitted on ``train``.
        split: the holdout split's ``{"val_ratio": ..., "split_seed": ...}``; None in the paper protocol.
    """

    name: str
    protocol: str
    train: SeriesSplit
    val: SeriesSplit
    test: SeriesSplit
    classes: tuple[str, ...]
    max_len: int
    num_features: int
    standardizer: Standardizer
    split: dict | None = None

    def summary(self) -> dict:
        """Sizes of the splits; a holdout run also records its split (enough to read the same data again)."""
        summary = {
            "dataset": self.name,
            "protocol": self.protocol,
            "train": len(self.train),
            "val": len(self.val),
            "test": len(self.test),
            "classes": len(self.classes),
            "features": self.num_features,
            "max_len": self.max_len,
        }
        if self.split is not None:
            summary.update(self.split)
        return summary


def pad_series(series: list[np.ndarray], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad or clip ``(T_i, C)`` arrays to ``(M, max_len, C)`` float32; also return the lengths ``(M,)``."""
    channels = series[0].shape[1]
    values = np.zeros((len(series), max_len, channels), dtype=np.float32)
    lengths = np.zeros(len(series), dtype=np.int64)
    for i, s in enumerate(series):
        n = min(len(s), max_len)
        values[i, :n] = s[:n]
        lengths[i] = n
    return torch.from_numpy(values), torch.from_numpy(lengths)


def _label_indices(labels: np.ndarray, classes: tuple[str, ...], path: Path) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(lookup))
    if unknown:
        raise ValueError(f"{path}: labels {unknown} do not occur in the training file's classes {list(classes)}")
    return np.array([lookup[label] for label in labels], dtype=np.int64)


def holdout_split(labels: np.ndarray, val_ratio: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/validation indices from the training file (scikit-learn's StratifiedShuffleSplit)."""
    from sklearn.model_selection import StratifiedShuffleSplit

    if not 0.0 < val_ratio < 1.0:
        raise ValueError(f"val_ratio must be in (0, 1), got {val_ratio}")
    splitter = StratifiedShuffleSplit(n_splits=1, test_size=val_ratio, random_state=seed)
    try:
        train_idx, val_idx = next(splitter.split(np.zeros(len(labels)), labels))
    except ValueError as error:
        raise ValueError(
            f"cannot split {len(labels)} training series into a stratified {val_ratio:.0%} validation set: {error}; "
            "use --protocol paper or a different --val-ratio"
        ) from error
    return np.sort(train_idx), np.sort(val_idx)


def load_uea(
    name: str,
    data_dir: str | os.PathLike | None = None,
    protocol: str = "paper",
    val_ratio: float = 0.2,
    split_seed: int = 1337,
) -> UEAData:
    """Load a UEA data set as padded, standardised tensors.

    Args:
        name: e.g. "JapaneseVowels".
        data_dir: root of the Multivariate2018_ts archive (``<root>/<name>/<name>_TRAIN.ts``); None uses sktime's data.
        protocol: "paper" (validate on the test file) or "holdout" (stratified validation split of the training file).
        val_ratio: validation fraction for "holdout".
        split_seed: seed of the holdout split (fixed across training seeds, as in mvts).

    Returns:
        UEAData with ``(M, L, C)`` value tensors, L = the longest training series.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    train_path, test_path = find_dataset_files(name, data_dir)
    train_file, test_file = read_ts(train_path), read_ts(test_path)
    classes = tuple(train_file.header.class_labels)
    train_series = [interpolate_missing(s) for s in train_file.series]
    test_series = [interpolate_missing(s) for s in test_file.series]
    channels = train_series[0].shape[1]
    if test_series[0].shape[1] != channels:
        raise ValueError(f"{test_path} has {test_series[0].shape[1]} dimensions but {train_path} has {channels}")
    train_labels = _label_indices(train_file.labels, classes, train_path)
    test_labels = _label_indices(test_file.labels, classes, test_path)
    max_len = max(len(s) for s in train_series)

    if protocol == "holdout":
        fit_idx, val_idx = holdout_split(train_labels, val_ratio, split_seed)
    else:
        fit_idx, val_idx = np.arange(len(train_series)), np.array([], dtype=np.int64)
    standardizer = Standardizer.fit([train_series[i] for i in fit_idx])

    def split(series: list[np.ndarray], labels: np.ndarray) -> SeriesSplit:
        values, lengths = pad_series(standardizer.transform(series), max_len)
        return SeriesSplit(values=values, lengths=lengths, labels=torch.from_numpy(labels))

    train = split([train_series[i] for i in fit_idx], train_labels[fit_idx])
    test = split(test_series, test_labels)
    val = split([train_series[i] for i in val_idx], train_labels[val_idx]) if protocol == "holdout" else test
    return UEAData(
        name=name,
        protocol=protocol,
        train=train,
        val=val,
        test=test,
        classes=classes,
        max_len=max_len,
        num_features=channels,
        standardizer=standardizer,
        split={"val_ratio": val_ratio, "split_seed": split_seed} if protocol == "holdout" else None,
    )
