"""core.bench.interleave: round-robin timing and the per-round ratio statistics."""

from core.bench.interleave import main, summarise


def test_ratio_is_median_of_same_round_ratios():
    # round 2 is slow for everyone (a load spike): per-round ratios stay 0.5, the ratio of medians would not
    times = [[1.0, 2.0], [10.0, 20.0], [1.2, 2.4]]
    rows = summarise(["a", "b"], times, reference="b")
    assert rows[0]["ratio"] == 0.5 and rows[1]["ratio"] == 1.0
    assert rows[0]["time_ms"] == 1200.0 and rows[0]["rounds"] == 3


def test_command_runs_targets_in_one_process(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert main(["--targets", "softmax", "linear", "--length", "16", "--dim", "16", "--heads", "2", "--rounds", "2",
                 "--threads", "1", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| linear | 16 |" in table and "time / softmax" in table
    assert out.is_file()
