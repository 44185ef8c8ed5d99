"""timeseries.results_page: pooling finished runs over seeds into the markdown results page."""

import json

import pytest

from timeseries.results_page import collect_results, main


def _write_run(root, model, seed, accuracy, protocol="paper"):
    folder = root / "JapaneseVowels" / protocol / model / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({
        "dataset": "JapaneseVowels", "model": model, "seed": seed, "protocol": protocol, "accuracy": accuracy,
        "best_epoch": 10, "seconds": 120.0, "threads": 2}))


def test_page_pools_seeds_beside_paper_and_original(tmp_path):
    _write_run(tmp_path / "a", "primalformer", 666, 97.0)
    _write_run(tmp_path / "b", "primalformer", 1, 98.0)
    _write_run(tmp_path / "b", "primalformer", 2, 99.0)
    _write_run(tmp_path / "b", "transformer", 666, 98.9)
    out = tmp_path / "page.md"
    assert main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(out), "--notes", "load 2"]) == 0
    page = out.read_text()
    # mean 98.0, sample std 1.0; the paper's 98.4; the original code's 97.8, 98.4, 97.6 in seed order 666, 1, 2
    row = "| JapaneseVowels | paper | primalformer | 666, 1, 2 | 97.0, 98.0, 99.0 | 98.0 ± 1.0 | 97.8, 98.4, 97.6 | 98.4 |"
    assert row in page
    assert "| transformer | 666 | 98.9 | 98.9 | 98.9 | 98.7 |" in page
    assert page.index("primalformer") < page.index("| transformer") and "load 2" in page


def test_same_run_in_two_folders_counts_once(tmp_path):
    _write_run(tmp_path / "a", "primalformer", 1, 97.0)
    _write_run(tmp_path / "b", "primalformer", 1, 97.0)
    assert len(collect_results([tmp_path / "a", tmp_path / "b"])) == 1


def test_missing_folder_and_no_runs_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "nowhere")])
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit):
        main([str(tmp_path / "empty")])
    assert "no result.json" in capsys.readouterr().err
