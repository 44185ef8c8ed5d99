"""Per-(data set, model) settings against the paper's table (primal.md section 2.1), and the summaries."""

from __future__ import annotations

import statistics

import pytest

from timeseries.config import resolve_config
from timeseries.data import PAPER_DATASETS
from timeseries.report import format_table, summarise

# (s, eta, m) of PrimalFormer and Primal.+Trans., transcribed from the official scripts
PAPER = {
    "EthanolConcentration": ((30, 0.1, 10), (40, 0.2, 10)),
    "JapaneseVowels": ((40, 0.5, 5), (30, 0.2, 5)),
    "PEMS-SF": ((40, 0.1, 5), (40, 0.0, 5)),
    "SelfRegulationSCP2": ((20, 0.0, 10), (20, 0.2, 10)),
    "UWaveGestureLibrary": ((20, 0.0, 10), (40, 0.1, 10)),
}


@pytest.mark.parametrize("dataset", PAPER_DATASETS)
@pytest.mark.parametrize("model", ["primalformer", "primal+trans", "transformer"])
def test_every_paper_setting_has_a_config(dataset, model):
    config = resolve_config(dataset, model)
    assert config["config_file"].endswith(f"{dataset}/{model}.json")
    assert config["epochs"] == (400 if dataset == "PEMS-SF" else 100)
    assert config["optimizer"] == ("Adam" if dataset == "SpokenArabicDigits" else "RAdam")
    assert (config["batch_size"], config["lr"], config["d_model"], config["num_layers"]) == (16, 1e-3, 512, 2)


@pytest.mark.parametrize("dataset", PAPER)
def test_primal_settings_match_the_paper(dataset):
    for model, expected in zip(("primalformer", "primal+trans"), PAPER[dataset]):
        config = resolve_config(dataset, model)
        assert (config["low_rank"], config["eta"], config["rank_multi"]) == expected


def test_overrides_and_unknown_settings():
    assert resolve_config("JapaneseVowels", "flowformer", overrides={"epochs": 3})["epochs"] == 3
    with pytest.raises(ValueError, match="unknown setting"):
        resolve_config("JapaneseVowels", "primalformer", overrides={"epoch": 3})
    with pytest.raises(ValueError, match="optimizer"):
        resolve_config("JapaneseVowels", "primalformer", overrides={"optimizer": "SGD"})
    with pytest.raises(ValueError, match="epochs must be a positive integer"):
        resolve_config("JapaneseVowels", "primalformer", overrides={"epochs": 0})
    with pytest.raises(ValueError, match="divisible by num_heads"):
        resolve_config("JapaneseVowels", "primalformer", overrides={"num_heads": 7})


def test_summary_mean_std_and_paper_column():
    results = [{"dataset": "JapaneseVowels", "model": "primalformer", "protocol": "paper", "seed": s, "accuracy": a,
                "best_epoch": 10, "seconds": 1.0} for s, a in ((666, 97.8), (1, 98.4), (2, 97.6))]
    (row,) = summarise(results)
    assert row["mean"] == pytest.approx(statistics.mean([97.8, 98.4, 97.6]))
    assert row["std"] == pytest.approx(statistics.stdev([97.8, 98.4, 97.6]))
    assert row["paper"] == 98.4
    assert "97.9 ± 0.4" in format_table([row])
