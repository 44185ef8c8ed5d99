"""``python -m lra benchmark``: mechanism selection from the registry, and both targets end to end on tiny data."""

import json

import pytest

import core
from lra.__main__ import main
from lra.benchmark import grows_linearly, linear_mechanisms


@pytest.mark.parametrize(
    "complexity, linear",
    [
        ("O(N d^2)", True),
        ("O(N m d + m^3)", True),
        ("O(N b (5 + r) d)", True),
        ("O(N^2 d)", False),
        ("O(N log N d)", False),
        ("O(N log^2 N d)", False),
        ("O(N log N + N c R d)", False),
        ("O(m^3)", False),
    ],
)
def test_complexity_is_read_as_linear_or_not(complexity, linear):
    assert grows_linearly(complexity) is linear


def test_malformed_complexity_is_rejected():
    with pytest.raises(ValueError, match="expected a complexity like"):
        grows_linearly("linear")


def test_linear_mechanisms_come_from_the_registry():
    chosen = linear_mechanisms()
    assert {"linear", "primal", "performer", "nystrom"} <= set(chosen)
    assert not {"softmax", "kernelized", "psf", "informer", "reformer"} & set(chosen)
    assert chosen == [name for name in core.list_attentions() if name in chosen]  # registry order


def tiny(tmp_path):
    return ["--data-root", str(tmp_path / "data"), "--runs-root", str(tmp_path / "runs"), "--results",
            str(tmp_path / "results" / "lra.md"), "--eval-every", "1", "--eval-batches", "1", "--warmup", "1",
            "--batch-size", "4"]  # fmt: skip


def test_adding_benchmark_end_to_end(tmp_path):
    argv = ["benchmark", "adding", "--attentions", "linear", "cosine", "--length", "256", "--curriculum", "16", "128",
            "--train", "16", "--dev", "4", "--test", "8", "--short-steps", "2", "--steps", "2", "--total-minutes", "5",
            *tiny(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    store = json.loads((tmp_path / "results" / "lra.json").read_text())
    runs = store["adding"]["runs"]
    assert [run["attention"] for run in runs] == ["linear", "cosine"]
    assert [stage["length"] for stage in runs[0]["curriculum"]] == [16, 128]
    assert all(stage["steps_done"] == 2 for run in runs for stage in run["curriculum"])
    assert all(run["steps_done"] == 2 and run["seq_len"] == 256 for run in runs)
    stage = json.loads((tmp_path / "runs" / "adding-256-seed1-linear-short128" / "result.json").read_text())
    assert stage["seq_len"] == 256 and stage["init_from"].endswith("short16/checkpoints/best.pt")
    assert json.loads((tmp_path / "runs" / "adding-256-seed1-cosine" / "result.json").read_text())["init_from"]
    markdown = (tmp_path / "results" / "lra.md").read_text()
    assert "## Adding (PSF), N = 256" in markdown and "| `cosine` | O(N d^2) | 16: 2, 128: 2 | 2 |" in markdown
    assert "trivial MSE" in markdown


def test_listops_benchmark_end_to_end_keeps_the_other_section(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "lra.json").write_text(json.dumps({"other": {"kept": True}}))
    argv = ["benchmark", "listops", "--minutes", "1", "--min-length", "10", "--max-length", "40", "--train", "24",
            "--dev", "4", "--test", "8", "--steps", "2", *tiny(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    store = json.loads((results / "lra.json").read_text())
    assert store["other"] == {"kept": True}
    run = store["listops"]["run"]
    assert run["steps_done"] == 2 and run["layers"] == ["primal", "primal"] and 0 <= run["majority_accuracy"] <= 1
    markdown = (results / "lra.md").read_text()
    assert "## ListOps, generated, 10 < length < 40 tokens" in markdown
    assert "majority-class rate" in markdown and "PrimalFormer | 37.3 %" in markdown


def test_bad_adding_arguments_are_refused(tmp_path, capsys):
    assert main(["benchmark", "adding", "--attentions", "nope", *tiny(tmp_path)]) == 2
    assert "unknown attention ['nope']" in capsys.readouterr().err
    assert main(["benchmark", "adding", "--attentions", "linear", "--curriculum", "2048", *tiny(tmp_path)]) == 2
    assert "must be shorter than --length 1024" in capsys.readouterr().err
