"""End to end through the real fairseq CLIs on a KJV slice: prepare-kjv -> fairseq-train (plugin) -> fairseq-eval-lm."""

from __future__ import annotations

import json
import math

import pytest

from language.__main__ import main

TINY = [
    "--set", "decoder-layers=2", "--set", "decoder-embed-dim=32", "--set", "decoder-input-dim=32",
    "--set", "decoder-output-dim=32", "--set", "decoder-ffn-embed-dim=64",
    "--set", "decoder-attention-heads=2", "--set", "tokens-per-sample=32", "--set", "max-tokens=512",
    "--set", "validate-interval-updates=0", "--set", "save-interval-updates=0", "--threads", "1",
]


@pytest.fixture(scope="module")
def kjv_bin(tmp_path_factory, kjv_available):
    root = tmp_path_factory.mktemp("kjv")
    code = main(["prepare-kjv", "--out", str(root / "raw"), "--dest", str(root / "bin"), "--max-chapters", "20"])
    assert code == 0
    return root


def test_prepare_kjv_layout(kjv_bin):
    raw = kjv_bin / "raw"
    stats = json.loads((raw / "kjv.json").read_text())["splits"]
    assert stats["train"]["chapters"] == 18 and stats["valid"]["chapters"] == 1 and stats["test"]["chapters"] == 1
    train = (raw / "wiki.train.tokens").read_text().splitlines()
    assert train[1] == " = Genesis = " and " = = Chapter 1 = = " in train
    assert " In the beginning God created the heaven and the earth . " in train
    assert "Chapter 11 " in (raw / "wiki.valid.tokens").read_text()  # position 10 of every 20 is held out
    assert (kjv_bin / "bin" / "dict.txt").is_file() and (kjv_bin / "bin" / "valid.bin").is_file()


def test_train_primal_with_fairseq_train_then_eval_lm(kjv_bin, tmp_path):
    run = tmp_path / "primal"
    code = main(["train", "--config", "kjv-primal", "--data", str(kjv_bin / "bin"), "--save-dir", str(run),
                 "--max-update", "4", "--log-interval", "1", "--timeout", "300", *TINY])
    assert code == 0
    result = json.loads((run / "result.json").read_text())
    log = (run / "train.log").read_text()
    assert "CoreAttentionLanguageModel" in log and "KSVDCrossEntropyCriterion" in log and "PrimalAttention" in log
    assert result["last_train_inner"]["num_updates"] == 4
    assert result["last_train_inner"]["ksvd"] > 0
    assert 1 < result["final_valid_ppl"] < 1e5
    code = main(["eval", "--data", str(kjv_bin / "bin"), "--path", str(run / "checkpoint_last.pt"),
                 "--subset", "valid", "--timeout", "300", "--threads", "1"])
    assert code == 0
    evaluation = json.loads((run / "eval_valid.json").read_text())
    assert evaluation["tokens_per_sample"] == 32 and evaluation["tokens"] > 500
    assert math.isfinite(evaluation["ppl"]) and 1 < evaluation["ppl"] < 1e5
    # eval-lm and the training-time validation score the same blocks: the perplexities agree
    assert evaluation["ppl"] == pytest.approx(result["final_valid_ppl"], rel=0.02)


def test_clear_errors(tmp_path, capsys):
    assert main(["prepare-wikitext", "--raw-dir", str(tmp_path), "--dest", str(tmp_path / "bin")]) == 2
    assert "wiki.train.tokens" in capsys.readouterr().err
    assert main(["train", "--config", "kjv-primal", "--data", str(tmp_path), "--save-dir", str(tmp_path / "r")]) == 2
    assert "prepare-wikitext" in capsys.readouterr().err
    assert main(["train", "--config", "no-such-config", "--data", str(tmp_path), "--save-dir", str(tmp_path)]) == 2
    assert "kjv-primal" in capsys.readouterr().err
    assert main(["prepare-kjv", "--out", str(tmp_path / "k"), "--bible-command", "no-such-bible"]) == 2
    assert "apt-get install bible-kjv bible-kjv-text" in capsys.readouterr().err


def test_train_dry_run_prints_the_paper_command(capsys, tmp_path):
    assert main(["train", "--config", "wikitext103-primal", "--data", str(tmp_path), "--save-dir", str(tmp_path),
                 "--dry-run"]) == 0
    command = capsys.readouterr().out
    for flag in ("--arch transformer_lm_primal", "--criterion cross_entropy_ksvd", "--ksvd-eta 0.1",
                 "--share-decoder-input-output-embed", "--warmup-updates 6000", "--tokens-per-sample 512",
                 "--update-freq 16", "--max-update 150000", "--user-dir"):
        assert flag in command


def test_benchmark_kjv_trains_both_scores_with_eval_lm_and_writes_the_report(kjv_bin, tmp_path):
    out, report = tmp_path / "bench", tmp_path / "results" / "language.md"
    code = main(["benchmark-kjv", "--data", str(kjv_bin / "bin"), "--out", str(out), "--minutes", "0.02",
                 "--report", str(report), *TINY])
    assert code in (0, 3)  # 3: the target was missed, which a one-second run may well do
    result = json.loads((out / "benchmark.json").read_text())
    assert result["schedule"] == "concurrent" and result["threads_per_model"] == 1
    primal, softmax = result["models"]["kjv-primal"], result["models"]["kjv-softmax"]
    assert primal["arch"] == "transformer_lm_primal" and softmax["arch"] == "transformer_lm"
    assert primal["ksvd"] == {"ksvd-eta": 0.1, "ksvd-scaling": "token"} and softmax["ksvd"] is None
    for model in (primal, softmax):
        assert model["updates"] >= 1 and model["valid_tokens"] > 500
        # eval-lm reports ppl = 2 ** (loss in bits) and agrees with the trainer's own validation pass
        assert model["valid_ppl"] == pytest.approx(2 ** model["valid_loss_base2"], rel=1e-3)
        assert model["valid_ppl"] == pytest.approx(model["trainer_valid_ppl"], rel=0.02)
    # same size: only the last layer's attention differs
    assert abs(primal["parameters"] - softmax["parameters"]) < 0.05 * softmax["parameters"]
    assert result["ratio_primal_over_softmax"] == pytest.approx(primal["valid_ppl"] / softmax["valid_ppl"], abs=1e-4)
    text = report.read_text()
    assert "| Primal.+ (`kjv-primal`)" in text and "| softmax (`kjv-softmax`)" in text
    assert f"{primal['valid_ppl']:.2f}" in text and "33.0" in text and "31.0" in text


def test_benchmark_threads_follow_the_schedule():
    from argparse import Namespace

    from language.benchmark import threads_per_model

    assert threads_per_model(Namespace(schedule="concurrent", threads=None)) == 1
    assert threads_per_model(Namespace(schedule="sequential", threads=None)) == 2
    assert threads_per_model(Namespace(schedule="sequential", threads=3)) == 3


def test_benchmark_epochs_scale_the_last_periodic_record_to_the_final_update():
    from language.benchmark import epochs_trained

    training = {"last_train_inner": {"update": 1.0, "num_updates": 400}, "valid": [{"valid_num_updates": 420.0}]}
    assert epochs_trained(training) == pytest.approx(1.05)
    assert epochs_trained({"last_train_inner": None, "valid": [{"valid_num_updates": 3.0}]}) is None
