"""``python -m core.bench --approx``: how well and how fast each random-feature combination approximates attention.

Accuracy: for every component function x weight matrix (Spectraformer, Nguyen et al., 2025; Performer,
Choromanski et al., 2021) and feature count m, the relative RMS error ``||out - exact||_F / ||exact||_F`` of the
attention output against exact kernel attention (float64), pooled over independent draws, on random activations
(N(0, 1) tokens through a freshly initialised layer's projections) and optionally on saved activations of a
trained layer (``--activations``). Timing (``--timing``): forward+backward time of each combination against plain
linear attention with the same feature count (``elu(x W) + 1`` features through the same kernel-sum op).
Writes ``approx.json``, ``approx.md`` and ``approx.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from core.attention.base import ProjectedAttention
from core.bench.measure import forward_backward_seconds
from core.engine.logging import write_json
from core.engine.plotting import pyplot, save_figure
from core.ops.feature_weights import WEIGHT_NAMES
from core.ops.linear import causal_linear_attention, linear_attention
from core.ops.random_features import COMPONENTS, KERNELS, reference_kernel_attention
from core.registry import build_attention

DEFAULT_FEATURES = [16, 32, 64, 128, 256, 512]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m core.bench --approx",
        description="Relative error of every random-feature combination against exact kernel attention vs the "
        "number of features m, and (with --timing) its forward+backward time against plain linear attention.",
    )
    parser.add_argument("--components", nargs="+", default=list(COMPONENTS), choices=COMPONENTS,
                        help="component functions to run (default: all five)")
    parser.add_argument("--weights", nargs="+", default=list(WEIGHT_NAMES), choices=WEIGHT_NAMES,
                        help="weight matrices to run (default: all ten)")
    parser.add_argument("--features", nargs="+", type=int, default=DEFAULT_FEATURES,
                        help=f"feature counts m for the accuracy sweep (default {DEFAULT_FEATURES})")
    parser.add_argument("--kernel", default="softmax", choices=KERNELS, help="target kernel (default softmax)")
    parser.add_argument("--causal", action="store_true", help="causal attention (accuracy and timing)")
    parser.add_argument("--dim", type=int, default=512, help="model width D (default 512)")
    parser.add_argument("--heads", type=int, default=8, help="heads H (default 8, head width D / H)")
    parser.add_argument("--length", type=int, default=256, help="sequence length N of the accuracy sweep (default 256)")
    parser.add_argument("--draws", type=int, default=3, help="independent feature draws pooled per point (default 3)")
    parser.add_argument("--activations", default=None,
                        help="torch.save'd dict with q, k, v of shape (B, H, N, d) and optionally a key padding "
                        "mask (B, N) from a trained layer (python -m timeseries.activations writes one); adds a "
                        "'real' accuracy panel")
    parser.add_argument("--timing", action="store_true",
                        help="also time forward+backward of each combination and of plain linear attention")
    parser.add_argument("--time-length", type=int, default=4096, help="N for --timing (default 4096)")
    parser.add_argument("--time-features", type=int, default=256, help="m for --timing (default 256)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after a warm-up; median (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="posrf/oprf x gaussian/orf/fastfood_learnable, m in 16 64 256, one draw")
    parser.add_argument("--out", default="runs/bench_approx", help="output folder (default runs/bench_approx)")
    return parser.parse_args(argv)


def random_activations(dim: int, heads: int, length: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """q, k, v ``[1, H, N, d]`` (float64): N(0, 1) tokens through a freshly initialised softmax layer's projections."""
    torch.manual_seed(seed)
    layer = build_attention("softmax", dim, heads).double()
    with torch.no_grad():
        q, k, v = layer.project_qkv(torch.randn(1, length, dim, dtype=torch.float64))
    return {"q": q, "k": k, "v": v}


def load_activations(path: str) -> dict[str, torch.Tensor]:
    """q, k, v ``(B, H, N, d)`` (float64) and, when the file has one, the key padding ``mask`` ``(B, N)``, e.g. as
    written by :func:`core.analysis.activations.save_projections`."""
    try:
        data = torch.load(path, map_location="cpu")
    except FileNotFoundError:
        raise SystemExit(f"error: no activations file {path}") from None
    if not isinstance(data, dict) or not all(name in data and data[name].dim() == 4 for name in "qkv"):
        raise SystemExit(f"error: {path} must hold q, k, v tensors of shape (B, H, N, d)")
    acts = {name: data[name].double() for name in "qkv"}
    if data.get("mask") is not None:
        mask = data["mask"].bool()
        if mask.shape != acts["q"].shape[:1] + acts["q"].shape[2:3]:
            raise SystemExit(f"error: {path}: mask has shape {tuple(mask.shape)}, expected (B, N) = "
                             f"{tuple(acts['q'].shape[:1] + acts['q'].shape[2:3])}")
        acts["mask"] = mask
    return acts


def relative_error(acts: dict[str, torch.Tensor], component: str, weights: str, m: int, kernel: str, causal: bool,
                   draws: int) -> float:
    """Relative RMS error of the attention output over real query rows, pooled over ``draws`` independently drawn
    modules (padded keys masked on both sides when ``acts`` has a ``mask``)."""
    q, k, v, mask = acts["q"], acts["k"], acts["v"], acts.get("mask")
    heads, d = q.shape[1], q.shape[-1]
    scale = d**-0.25
    exact = reference_kernel_attention(q * scale, k * scale, v, mask, causal=causal, kernel=kernel)
    rows = torch.ones(q.shape[0], 1, q.shape[2], 1, dtype=q.dtype) if mask is None else mask[:, None, :, None].to(q.dtype)
    if component == "trigrf" and m % 2:
        m += 1
    squares = []
    for seed in range(draws):
        torch.manual_seed(1000 + seed)
        module = build_attention("random_features", heads * d, heads, causal=causal, component=component,
                                 weights=weights, num_features=m, kernel=kernel).double().eval()
        with torch.no_grad():
            out = module.attend(q, k, v, mask, None)
        squares.append(float(((out - exact) * rows).pow(2).sum() / (exact * rows).pow(2).sum()))
    return statistics.fmean(squares) ** 0.5


class PlainLinearBaseline(ProjectedAttention):
    """Linear attention with ``elu(x W^T) + 1`` features of width m: the same projections, one feature GEMM and
    the same kernel-sum op as the random-feature modules, without their estimator (the timing baseline)."""

    def __init__(self, dim: int, num_heads: int, causal: bool = False, *, num_features: int = 256) -> None:
        super().__init__(dim, num_heads, causal)
        self.register_buffer("omega", torch.randn(num_heads, num_features, self.head_dim))

    def attend(self, q, k, v, key_padding_mask, x):
        qf = F.elu(torch.matmul(q, self.omega.transpose(-1, -2))) + 1
        kf = F.elu(torch.matmul(k, self.omega.transpose(-1, -2))) + 1
        if self.causal:
            return causal_linear_attention(qf, kf, v, key_padding_mask)
        return linear_attention(qf, kf, v, key_padding_mask)


def time_against(module: torch.nn.Module, baseline: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict:
    """Forward + backward of ``module`` and ``baseline`` in alternation (one warm-up each, then ``repeats`` pairs).

    Returns medians of both times and the median of the per-pair ratios: each pair runs back to back, so a load
    change on a shared machine moves both sides of a ratio together.
    """
    forward_backward_seconds(module, x), forward_backward_seconds(baseline, x)
    pairs = [(forward_backward_seconds(module, x), forward_backward_seconds(baseline, x)) for _ in range(repeats)]
    return {"time_s": statistics.median(a for a, _ in pairs), "linear_time_s": statistics.median(b for _, b in pairs),
            "ratio": statistics.median(a / b for a, b in pairs)}


def run_timing(args: argparse.Namespace, combos: list[tuple[str, str]]) -> list[dict]:
    torch.set_num_threads(args.threads)
    m = args.time_features
    x = torch.randn(1, args.time_length, args.dim, requires_grad=True)
    torch.manual_seed(0)
    baseline = PlainLinearBaseline(args.dim, args.heads, args.causal, num_features=m)
    rows = []
    for component, weights in tqdm(combos, desc="timing", unit="combo", file=sys.stderr):
        torch.manual_seed(0)
        module = build_attention("random_features", args.dim, args.heads, causal=args.causal, component=component,
                                 weights=weights, num_features=m)
        rows.append({"component": component, "weights": weights, "num_features": m, "length": args.time_length,
                     **time_against(module, baseline, x, args.repeats)})
    return rows


def format_tables(accuracy: list[dict], timing: list[dict], features: list[int]) -> str:
    lines = []
    for source in dict.fromkeys(row["activations"] for row in accuracy):
        lines += [f"relative error vs exact attention ({source} activations)", "",
                  "| component | weights | " + " | ".join(f"m={m}" for m in features) + " |",
                  "|---|---|" + "---|" * len(features)]
        rows = [r for r in accuracy if r["activations"] == source]
        for component, weights in dict.fromkeys((r["component"], r["weights"]) for r in rows):
            cells = {r["num_features"]: r["relative_error"] for r in rows
                     if r["component"] == component and r["weights"] == weights}
            lines.append(f"| {component} | {weights} | " + " | ".join(f"{cells[m]:.3f}" for m in features) + " |")
        lines.append("")
    if timing:
        lines += ["forward+backward time against plain linear attention at the same m", "",
                  "| component | weights | m | N | time (s) | linear (s) | ratio |", "|---|---|---|---|---|---|---|"]
        for r in timing:
            lines.append(f"| {r['component']} | {r['weights']} | {r['num_features']} | {r['length']} | "
                         f"{r['time_s']:.3f} | {r['linear_time_s']:.3f} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


def plot_accuracy(accuracy: list[dict], path: Path, title: str) -> None:
    plt = pyplot()

    sources = list(dict.fromkeys(row["activations"] for row in accuracy))
    fig, axes = plt.subplots(1, len(sources), figsize=(7 * len(sources), 5), squeeze=False)
    styles = dict(zip(COMPONENTS, ["-", "--", "-.", ":", (0, (5, 1))]))
    for axis, source in zip(axes[0], sources):
        rows = [r for r in accuracy if r["activations"] == source]
        for component, weights in dict.fromkeys((r["component"], r["weights"]) for r in rows):
            points = sorted((r["num_features"], r["relative_error"]) for r in rows
                            if r["component"] == component and r["weights"] == weights)
            axis.plot(*zip(*points), linestyle=styles[component], marker=".", label=f"{component}+{weights}")
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("features m")
        axis.set_ylabel("relative RMS error of the attention output")
        axis.set_title(f"{source} activations")
        axis.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=5, ncol=2, loc="lower left")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path)


def run_approx(args: argparse.Namespace) -> dict:
    """The accuracy sweep (and, with ``args.timing``, the timing sweep) described by parsed ``args``.

    Returns:
        dict with ``config``, ``accuracy`` and ``timing`` rows, as written to ``approx.json``.
    """
    if args.quick:
        args.components, args.weights = ["posrf", "oprf"], ["gaussian", "orf", "fastfood_learnable"]
        args.features, args.draws = [16, 64, 256], 1
    combos = list(itertools.product(args.components, args.weights))
    torch.set_num_threads(1)  # the accuracy sweep is many small float64 ops: one thread avoids oversubscription
    sources = {"random": random_activations(args.dim, args.heads, args.length)}
    if args.activations:
        sources["real"] = load_activations(args.activations)
    accuracy = []
    points = [(s, c, w, m) for s in sources for c, w in combos for m in args.features]
    for source, component, weights, m in tqdm(points, desc="accuracy", unit="point", file=sys.stderr):
        error = relative_error(sources[source], component, weights, m, args.kernel, args.causal, args.draws)
        accuracy.append({"activations": source, "component": component, "weights": weights, "num_features": m,
                         "kernel": args.kernel, "causal": args.causal, "relative_error": error})
    timing = run_timing(args, combos) if args.timing else []
    return {"config": dict(vars(args)), "accuracy": accuracy, "timing": timing}


def write_approx(result: dict, folder: str | Path, stem: str = "approx") -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png`` of a :func:`run_approx` result into ``folder``."""
    folder, config = Path(folder), result["config"]
    table = format_tables(result["accuracy"], result["timing"], config["features"])
    json_path = write_json(result, folder / f"{stem}.json")
    md_path = folder / f"{stem}.md"
    md_path.write_text(table + "\n")
    mode = "causal" if config["causal"] else "non-causal"
    title = (f"{config['kernel']} kernel, {mode}, D={config['dim']}, H={config['heads']}, N={config['length']}, "
             f"{config['draws']} draws")
    png_path = folder / f"{stem}.png"
    plot_accuracy(result["accuracy"], png_path, title)
    return [json_path, md_path, png_path]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run_approx(args)
    print(format_tables(result["accuracy"], result["timing"], args.features))
    written = write_approx(result, args.out)
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0

if __name__ == "__main__":
    sys.exit(main())
