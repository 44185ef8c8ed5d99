"""Saving a trained run's attention activations for the random-feature accuracy sweep."""

import numpy as np
import torch

from core.bench.approx import load_activations
from timeseries.activations import load_trained_run, main
from timeseries.cli import main as timeseries_main
from timeseries.data import load_uea


def test_a_finished_run_gives_the_first_layers_queries_keys_values_and_mask(toy_root, tmp_path, capsys):
    root, _ = toy_root
    out = tmp_path / "runs"
    assert timeseries_main(["--dataset", "Toy", "--data-dir", str(root), "--model", "transformer", "--seeds", "1",
                            "--epochs", "2", "--d-model", "16", "--num-heads", "2", "--ffn-dim", "32",
                            "--out", str(out), "--no-progress"]) == 0
    run_dir = out / "Toy" / "paper" / "transformer" / "seed1"
    acts_path = tmp_path / "acts.pt"
    assert main([str(run_dir), "--data-dir", str(root), "--out", str(acts_path), "--max-series", "10"]) == 0
    assert "real tokens" in capsys.readouterr().out
    acts = load_activations(str(acts_path))
    assert acts["q"].shape[:2] == (10, 2) and acts["q"].shape[-1] == 8 and acts["mask"].shape == acts["q"].shape[::2][:2]
    model, data = load_trained_run(run_dir, root)
    longest = torch.argsort(data.test.lengths, descending=True, stable=True)[:10]
    assert sorted(acts["mask"].sum(1).tolist()) == sorted(data.test.lengths[longest].tolist())
    first = next(m for m in model.modules() if hasattr(m, "project_qkv"))
    steps = int(data.test.lengths[longest[0]])
    with torch.no_grad():  # the first layer's input written out: projection, scale, positions
        h = model.positions(model.input_norm(model.input_proj(data.test.values[longest[:1], :steps]) * 16**0.5))
        q = first.project_qkv(h)[0].double()
    rows = [i for i in range(10) if int(acts["mask"][i].sum()) == steps]
    assert any(torch.allclose(acts["q"][i, :, :steps], q[0], atol=1e-5) for i in rows)


def test_a_folder_without_a_finished_run_is_reported(tmp_path, capsys):
    assert main([str(tmp_path / "nothing")]) == 2
    assert "not found" in capsys.readouterr().err


def test_a_holdout_run_is_read_back_with_its_own_validation_split(toy_root, tmp_path):
    root, _ = toy_root
    out = tmp_path / "runs"
    assert timeseries_main(["--dataset", "Toy", "--data-dir", str(root), "--model", "transformer", "--seeds", "1",
                            "--protocol", "holdout", "--val-ratio", "0.5", "--split-seed", "7", "--epochs", "1",
                            "--d-model", "16", "--num-heads", "2", "--ffn-dim", "32", "--out", str(out),
                            "--no-progress"]) == 0
    _, data = load_trained_run(out / "Toy" / "holdout" / "transformer" / "seed1", root)
    default_split = load_uea("Toy", root, "holdout")
    assert data.split == {"val_ratio": 0.5, "split_seed": 7}
    assert len(data.val) == len(data.train) and len(default_split.val) < len(default_split.train)
    # the run's standardisation was fitted on its own training part; reading it back refits the same numbers
    np.testing.assert_allclose(data.standardizer.mean, load_uea("Toy", root, "holdout", 0.5, 7).standardizer.mean)
