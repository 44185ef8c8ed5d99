"""``python -m core.bench --approx`` on a tiny configuration: it writes its files and its errors behave."""

import json

import torch

from core.bench.__main__ import main as bench_main


def test_approx_sweep_writes_results_and_error_falls_with_m(tmp_path):
    acts = {name: 0.3 * torch.randn(1, 2, 24, 8, generator=torch.Generator().manual_seed(i), dtype=torch.float64)
            for i, name in enumerate("qkv")}
    torch.save(acts, tmp_path / "acts.pt")
    argv = ["--approx", "--components", "posrf", "oprf", "--weights", "orf", "--features", "8", "512",
            "--dim", "16", "--heads", "2", "--length", "24", "--draws", "2", "--activations", str(tmp_path / "acts.pt"),
            "--out", str(tmp_path / "out")]
    previous = torch.get_num_threads()
    try:
        assert bench_main(argv) == 0
    finally:
        torch.set_num_threads(previous)
    result = json.loads((tmp_path / "out" / "approx.json").read_text())
    assert (tmp_path / "out" / "approx.png").exists() and (tmp_path / "out" / "approx.md").exists()
    rows = result["accuracy"]
    assert {r["activations"] for r in rows} == {"random", "real"}
    for source in ("random", "real"):
        for component in ("posrf", "oprf"):
            error = {r["num_features"]: r["relative_error"] for r in rows
                     if r["activations"] == source and r["component"] == component}
            assert error[512] < error[8] / 2, (source, component, error)
