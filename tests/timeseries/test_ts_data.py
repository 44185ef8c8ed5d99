"""UEA preprocessing: interpolation, train-only standardisation, padding/clipping, splits, file lookup."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from timeseries.data import find_dataset_files, interpolate_missing, load_uea, sktime_data_root


def test_interpolation_matches_pandas():
    rng = np.random.default_rng(0)
    series = rng.normal(size=(15, 4))
    series[[0, 1, 5, 6, 7, 14], 0] = np.nan
    series[[3, 9], 2] = np.nan
    series[:, 3] = np.nan
    got = interpolate_missing(series)
    expected = pd.DataFrame(series).interpolate(method="linear", limit_direction="both").fillna(0.0).to_numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_load_uea_pads_clips_and_standardises_on_train_only(toy_root, ts_text):
    root, written = toy_root
    train_series, train_labels = written["TRAIN"]
    test_series, _ = written["TEST"]
    # a longer test series must be clipped to the longest training series
    test_series = [np.vstack([test_series[0]] * 3)] + test_series[1:]
    (root / "Toy" / "Toy_TEST.ts").write_text(ts_text(test_series, written["TEST"][1], ["c0", "c1", "c2"]))
    data = load_uea("Toy", root)
    max_len = max(len(s) for s in train_series)
    assert data.max_len == max_len and data.train.values.shape == (24, max_len, 3)
    assert data.test.lengths[0] == max_len
    stacked = np.concatenate(train_series)
    mean, std = stacked.mean(axis=0), stacked.std(axis=0)
    first = (train_series[0] - mean) / std
    np.testing.assert_allclose(data.train.values[0, : len(first)].numpy(), first, rtol=1e-5, atol=1e-5)
    assert torch.all(data.train.values[~data.train.mask] == 0)
    assert data.train.labels.tolist() == [int(label[1]) for label in train_labels]
    expected_test = (test_series[1][:max_len] - mean) / std
    np.testing.assert_allclose(data.test.values[1, : len(expected_test)].numpy(), expected_test, rtol=1e-5, atol=1e-5)
    assert data.val is data.test


def test_holdout_split_is_stratified_disjoint_and_fits_on_its_train_part(toy_root):
    root, written = toy_root
    data = load_uea("Toy", root, protocol="holdout", val_ratio=0.25)
    assert len(data.train) == 18 and len(data.val) == 6 and len(data.test) == 18
    assert sorted(data.val.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    train_rows = {tuple(np.round(r, 4)) for r in data.train.values[:, 0].numpy()}
    val_rows = {tuple(np.round(r, 4)) for r in data.val.values[:, 0].numpy()}
    assert not train_rows & val_rows
    series = written["TRAIN"][0]
    fitted = data.standardizer.mean
    assert not np.allclose(fitted, np.concatenate(series).mean(axis=0))  # the validation part is left out


def test_missing_dataset_explains_where_it_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match="Heartbeat.*--data-dir"):
        find_dataset_files("Heartbeat", tmp_path)


def test_japanese_vowels_from_the_installed_sktime():
    if not (sktime_data_root() / "JapaneseVowels").is_dir():
        pytest.skip("this sktime installation does not ship JapaneseVowels")
    data = load_uea("JapaneseVowels")
    assert data.summary() == {"dataset": "JapaneseVowels", "protocol": "paper", "train": 270, "val": 370, "test": 370,
                              "classes": 9, "features": 12, "max_len": 26}
    assert int(data.train.lengths.min()) == 7
    np.testing.assert_allclose(data.train.values[data.train.mask].mean(0).numpy(), 0.0, atol=1e-5)


def test_shipped_data_are_found_without_importing_sktime():
    """Locating sktime's data folder must not import sktime (about 1.7 s); reading a file does."""
    if not (sktime_data_root() / "JapaneseVowels").is_dir():
        pytest.skip("this sktime installation does not ship JapaneseVowels")
    code = ("import sys\n"
            "from timeseries.data import find_dataset_files\n"
            "train, test = find_dataset_files('JapaneseVowels')\n"
            "assert train.is_file() and test.is_file(), (train, test)\n"
            "assert 'sktime' not in sys.modules, 'finding the files imported sktime'\n")
    subprocess.run([sys.executable, "-c", code], check=True)
