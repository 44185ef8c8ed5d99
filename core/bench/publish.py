"""``python -m core.bench --report FOLDER``: every core benchmark in one run, and the page that shows them.

Writes into FOLDER (``docs/results`` for the published page):

- ``core_bench.{json,md,png}`` and ``core_bench_causal.*``: forward+backward time and peak memory vs N of every
  registered mechanism (causal: every mechanism with a causal form), in fresh processes (:mod:`core.bench.runner`);
- ``core_approx.{json,md,png}``: relative error of each random-feature combination vs the number of features
  (:mod:`core.bench.approx`, the ``--approx`` sweep);
- ``core_spectrum.{json,png}``: cumulative singular-value curves of each mechanism's attention matrix
  (:mod:`core.bench.spectra`);
- ``core.md``: the page linking all of them, with the machine, the load and the command that produced it.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from core.bench import approx
from core.bench.report import pivot_table, sweep_title, write_sweep
from core.bench.runner import choose_targets, run_sweep
from core.bench.spectra import format_spectra, mechanism_spectra, plot_mechanism_spectra
from core.engine.logging import write_json
from core.engine.machine import load_average, machine_description
from core.registry import attention_info, list_attentions

SPECTRUM_SETTINGS = {
    "full": dict(dim=256, heads=4, length=256, batch=2),
    "quick": dict(dim=256, heads=4, length=128, batch=1),
}


def publish(args: argparse.Namespace, argv: list[str], options: dict, lengths: list[int], repeats: int) -> int:
    """Run the sweeps, the accuracy sweep and the spectra for parsed ``python -m core.bench`` arguments.

    Args:
        args: the parsed command line; ``args.report`` is the output folder.
        argv: the arguments as given, quoted on the page as the command that made it.
        options: per-mechanism constructor options (``--options``).
        lengths, repeats: the sequence lengths and timed repeats already chosen for ``--quick`` or not.
    """
    folder = Path(args.report)
    started, load = time.time(), load_average()
    sweeps = {}
    for causal in (False, True):
        mode_args = argparse.Namespace(**{**vars(args), "causal": causal})
        if causal:
            names = args.mechanisms or list_attentions(causal=True)
            mode_args.mechanisms = [name for name in names if attention_info(name).causal]
        common = dict(batch=args.batch, dim=args.dim, heads=args.heads, causal=causal, dtype=args.dtype,
                      device=args.device, repeats=repeats, threads=args.threads)
        print(f"[report] time and memory, {'causal' if causal else 'non-causal'}", file=sys.stderr)
        results = run_sweep(choose_targets(mode_args), lengths, common, options, timeout=args.timeout)
        stem = "core_bench_causal" if causal else "core_bench"
        write_sweep(results, {**common, "lengths": lengths, "options": options}, folder, stem, sweep_title(common))
        sweeps[stem] = (results, common)

    print("[report] random-feature accuracy", file=sys.stderr)
    approx_args = approx.parse_args(["--quick"] if args.quick else [])
    accuracy = approx.run_approx(approx_args)
    approx.write_approx(accuracy, folder, stem="core_approx")

    print("[report] spectra", file=sys.stderr)
    spectrum_setting = SPECTRUM_SETTINGS["quick" if args.quick else "full"]
    names = args.mechanisms or list_attentions()
    spectra = mechanism_spectra(names, **spectrum_setting)
    write_json({"config": spectrum_setting, "spectra": spectra}, folder / "core_spectrum.json")
    title = "last of 2 layers at initialisation, N={length}, D={dim}, H={heads}".format(**spectrum_setting)
    plot_mechanism_spectra(spectra, folder / "core_spectrum.png", title=title)

    command = shlex.join(["python", "-m", "core.bench", *argv])
    page = render_page(args, command, sweeps, accuracy, spectra, spectrum_setting, load, time.time() - started)
    (folder / "core.md").write_text(page)
    print(f"wrote {folder / 'core.md'} and its core_* files")
    return 0


def _machine(load: list[float] | None) -> str:
    machine = machine_description()
    text = f"{machine['cpu']}, {machine['logical_cpus']} logical CPUs, torch {machine['torch']}, Python {machine['python']}"
    if load is None:
        return text
    return text + f"; load average at the start {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1 / 5 / 15 min)"


def _best_per_feature_count(rows: list[dict]) -> str:
    """One line per m: the combination with the lowest error, and the median over all combinations."""
    lines = ["| m | best combination | its error | median error |", "|---:|---|---:|---:|"]
    for m in sorted({row["num_features"] for row in rows}):
        at_m = [row for row in rows if row["num_features"] == m]
        best = min(at_m, key=lambda row: row["relative_error"])
        median = statistics.median(row["relative_error"] for row in at_m)
        lines.append(f"| {m} | {best['component']} + {best['weights']} | {best['relative_error']:.3f} | {median:.3f} |")
    return "\n".join(lines)


def _sweep_section(title: str, stem: str, results: list[dict], common: dict) -> list[str]:
    return [
        f"## {title}",
        "",
        f"B = {common['batch']}, D = {common['dim']}, H = {common['heads']}, {common['dtype']} on {common['device']}, "
        f"torch threads: {common['threads']}; the time is the median of {common['repeats']} timed forward+backward "
        "pass(es) after a warm-up.",
        "",
        f"![{title}]({stem}.png)",
        "",
        pivot_table(results, "time_ms", "ms"),
        "",
        pivot_table(results, "peak_mb", "MB"),
        "",
        f"Every row with its ratios to softmax: [{stem}.md]({stem}.md); raw rows: [{stem}.json]({stem}.json). An "
        "empty cell means the mechanism already failed (oom, timeout, error) at a shorter length.",
        "",
    ]


def render_page(args: argparse.Namespace, command: str, sweeps: dict, accuracy: dict, spectra: dict, spectrum: dict,
                load: list[float] | None, seconds: float) -> str:
    """The Markdown of ``core.md``."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    config = accuracy["config"]
    lines = [
        "# Core benchmarks: cost, random-feature accuracy and spectra",
        "",
        f"Generated by `{command}` on {stamp} in {seconds / 60:.0f} minutes; every file named `core*` in this folder "
        "comes from that run, so regenerate rather than edit.",
        "",
        f"Machine: {_machine(load)}. On CPU the memory column is the resident-set high-water mark above the "
        "process's baseline; on CUDA it is `max_memory_allocated`.",
        "",
    ]
    if args.quick:
        lines += ["**This is a `--quick` run** (short lengths, one repeat, a reduced accuracy sweep): a smoke test of "
                  "the pipeline, not the published numbers.", ""]
    lines += _sweep_section("Time and memory vs N (non-causal)", "core_bench", *sweeps["core_bench"])
    lines += _sweep_section("Time and memory vs N (causal)", "core_bench_causal", *sweeps["core_bench_causal"])
    lines += [
        "## Random-feature approximation error vs number of features",
        "",
        f"Relative RMS error of the attention output against exact {config['kernel']}-kernel attention (float64), "
        f"pooled over independent feature draws (draws: {config['draws']}), on N(0, 1) tokens through a fresh "
        f"layer's projections (D = {config['dim']}, H = {config['heads']}, N = {config['length']}). The combinations "
        "and their papers are described in [random_features.md](../random_features.md).",
        "",
        "![approximation error vs features](core_approx.png)",
        "",
        _best_per_feature_count(accuracy["accuracy"]),
        "",
        "Every combination at every m: [core_approx.md](core_approx.md); raw rows: [core_approx.json](core_approx.json).",
        "",
        "## Spectra of the attention matrices",
        "",
        "Normalised cumulative singular values `c_k = sum_{i<=k} sigma_i / sum_i sigma_i` (the quantity of the "
        "paper's Figure 2) of the last layer's attention matrix in a freshly initialised two-layer encoder per "
        f"mechanism (D = {spectrum['dim']}, H = {spectrum['heads']}, N = {spectrum['length']}, random samples: "
        f"{spectrum['batch']}; mean over samples and heads). At initialisation the curves show the rank each "
        "construction allows, not what training does with it; the trained DeiT vs Primal.+DeiT curves come from "
        "`python -m vision spectrum` ([vision.md](../vision.md)).",
        "",
        "![cumulative singular values per mechanism](core_spectrum.png)",
        "",
        format_spectra(spectra),
        "",
        "k (p %) is the number of singular directions that carry p % of the sum; curves with std: "
        "[core_spectrum.json](core_spectrum.json).",
        "",
    ]
    return "\n".join(lines)
