"""``python -m vision spectrum``, ``evaluate``, ``compare`` and ``report`` on trained checkpoints (paper Figure 2)."""

from __future__ import annotations

import json

import timm
import torch

import vision  # noqa: F401
from core.analysis.spectrum import collect_attention_matrices
from vision.cli import main
from vision.config import TrainConfig
from vision.spectrum import analysed_blocks
from vision.train import run


def test_blocks_analysed_are_last_canonical_and_primal(tiny):
    model = timm.create_model("primal_deit_tiny_patch16_224", low_rank=4, num_primal_blocks=1, **{**tiny, "depth": 3})
    assert list(analysed_blocks(model)) == ["L[1] softmax", "L[2] primal"]
    assert len(analysed_blocks(model, "all")) == 3
    matrices = collect_attention_matrices(model, [torch.randn(2, 3, 32, 32)], layers=analysed_blocks(model))
    softmax = matrices["L[1] softmax"]
    assert softmax.shape == (2, 4, 17, 17)
    torch.testing.assert_close(softmax.sum(-1), torch.ones(2, 4, 17))  # row-stochastic


def test_spectrum_command_compares_checkpoints(image_folder, tmp_path, capsys):
    common = dict(dataset="folder", data_path=str(image_folder), img_size=32, patch_size=8, embed_dim=32, depth=2,
                  num_heads=2, low_rank=4, batch_size=6, epochs=1, workers=0, max_train_batches=1, threads=1)
    run(TrainConfig(model="primal_deit_tiny_patch16_224", output_dir=str(tmp_path / "primal"), **common))
    run(TrainConfig(model="deit_tiny_patch16_224", output_dir=str(tmp_path / "deit"), **common))
    stem = tmp_path / "fig" / "spectrum"
    code = main(["spectrum", "--checkpoint", str(tmp_path / "deit" / "best.pt"), str(tmp_path / "primal" / "best.pt"),
                 "--label", "DeiT", "Primal", "--num-images", "5", "--output", str(stem)])
    assert code == 0
    result = json.loads(stem.with_suffix(".json").read_text())
    assert set(result["curves"]) == {"DeiT L[1] softmax", "Primal L[0] softmax", "Primal L[1] primal"}
    for curve in result["curves"].values():
        mean = torch.tensor(curve["mean"])
        assert len(mean) == 17 and torch.all(mean[1:] >= mean[:-1] - 1e-9) and abs(mean[-1] - 1) < 1e-6
    assert stem.with_suffix(".png").stat().st_size > 0
    assert "k=1" in capsys.readouterr().out

    assert main(["evaluate", "--checkpoint", str(tmp_path / "primal" / "best.pt"), "--workers", "0"]) == 0
    evaluation = json.loads((tmp_path / "primal" / "evaluation.json").read_text())
    trained = json.loads((tmp_path / "primal" / "result.json").read_text())
    assert evaluation["images"] == 12 and abs(evaluation["top1"] - trained["final"]["top1"]) < 1e-6
    assert main(["compare", str(tmp_path / "deit"), str(tmp_path / "primal"), "--output", str(tmp_path / "c.json")]) == 0
    table = capsys.readouterr().out
    assert "| deit |" in table and "| primal |" in table
    assert [row["primal_blocks"] for row in json.loads((tmp_path / "c.json").read_text())["runs"]] == [[], [1]]
    page = tmp_path / "docs" / "vision.md"
    assert main(["report", str(tmp_path / "deit"), str(tmp_path / "primal"), "--label", "DeiT", "Primal", "--spectrum",
                 str(stem), "--target", "101", "--output", str(page)]) == 0
    text = page.read_text()
    assert "| DeiT | 2 softmax + 0 primal |" in text and "| Primal | 1 softmax + 1 primal |" in text
    assert "not reached" in text
    assert "| Primal.+DeiT-Small/16 | 75.7 | 79.8 |" in text  # the paper's Table 7a for context
    assert "](vision_spectrum.png)" in text and (tmp_path / "docs" / "vision_spectrum.png").stat().st_size > 0
    resume_from_weights = ["train", "--dataset", "folder", "--data-path", str(image_folder), "--img-size", "32",
                           "--model", "primal_deit_tiny_patch16_224", "--patch-size", "8", "--embed-dim", "32",
                           "--depth", "2", "--num-heads", "2", "--low-rank", "4", "--workers", "0", "--batch-size", "6",
                           "--output-dir", str(tmp_path / "again"), "--resume", str(tmp_path / "primal" / "best.pt")]
    assert main(resume_from_weights) == 2
    assert "weights only" in capsys.readouterr().err
