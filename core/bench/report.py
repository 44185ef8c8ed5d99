"""Tables and plots of benchmark results."""

from __future__ import annotations

from pathlib import Path

from core.engine.logging import write_json
from core.engine.plotting import pyplot, save_figure


def _index(results: list[dict]) -> dict[tuple[str, int], dict]:
    return {(r["target"], r["length"]): r for r in results}


def format_table(results: list[dict]) -> str:
    """Markdown table: time and memory per target and N, with ratios to softmax and to the target's floor."""
    index = _index(results)
    header = "| mechanism | N | time (ms) | peak mem (MB) | time / softmax | mem / softmax | time / floor | status |"
    lines = [header, "|" + "---|" * 8]
    for row in results:
        target, n = row["target"], row["length"]
        if row.get("status") != "ok":
            lines.append(f"| {target} | {n} | - | - | - | - | - | {row.get('status')} |")
            continue
        base = index.get(("softmax", n))
        floor = index.get((f"{target}:floor", n))
        time_ratio = _ratio(row, base, "time_ms")
        mem_ratio = _ratio(row, base, "peak_mb")
        floor_ratio = _ratio(row, floor, "time_ms")
        lines.append(
            f"| {target} | {n} | {row['time_ms']:.1f} | {row['peak_mb']:.1f} | {time_ratio} | {mem_ratio} | "
            f"{floor_ratio} | ok |"
        )
    return "\n".join(lines)


def pivot_table(results: list[dict], key: str, unit: str) -> str:
    """Markdown table with one row per target and one column per N: ``key`` (e.g. ``time_ms``) or the status."""
    index = _index(results)
    targets = list(dict.fromkeys(r["target"] for r in results))
    lengths = sorted({r["length"] for r in results})
    lines = ["| mechanism | " + " | ".join(f"N={n} ({unit})" for n in lengths) + " |",
             "|---|" + "---:|" * len(lengths)]
    for target in targets:
        cells = []
        for n in lengths:
            row = index.get((target, n))
            if row is None:
                cells.append("")  # not run: the target failed at a shorter length
            elif row.get("status") != "ok":
                cells.append(str(row.get("status")))
            else:
                cells.append(f"{row[key]:.1f}")
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_sweep(results: list[dict], config: dict, folder: str | Path, stem: str, title: str) -> list[Path]:
    """Write ``<stem>.json`` (config + rows), ``<stem>.md`` (:func:`format_table`) and ``<stem>.png`` into ``folder``."""
    folder = Path(folder)
    written = [write_json({"config": config, "results": results}, folder / f"{stem}.json")]
    (folder / f"{stem}.md").write_text(format_table(results) + "\n")
    written.append(folder / f"{stem}.md")
    plot = plot_results(results, folder / f"{stem}.png", title=title)
    if plot is not None:
        written.append(plot)
    return written


def _ratio(row: dict, base: dict | None, key: str) -> str:
    if not base or base.get("status") != "ok" or not base.get(key):
        return "-"
    return f"{row[key] / base[key]:.2f}x"


def plot_results(results: list[dict], path: str | Path, title: str = "") -> Path | None:
    """Log-log time and memory vs N, one line per target (floors dashed), the legend beside the axes.

    Colours repeat every ten targets, so the marker changes with each group of ten.
    """
    plt = pyplot()

    ok = [r for r in results if r.get("status") == "ok"]
    if not ok:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.6))
    markers = ["o", "s", "^", "D"]
    for i, target in enumerate(dict.fromkeys(r["target"] for r in ok)):
        rows = sorted((r for r in ok if r["target"] == target), key=lambda r: r["length"])
        style = dict(linestyle="--" if target.endswith(":floor") else "-", marker=markers[(i // 10) % len(markers)])
        lengths = [r["length"] for r in rows]
        axes[0].plot(lengths, [r["time_ms"] for r in rows], label=target, **style)
        axes[1].plot(lengths, [max(r["peak_mb"], 1e-3) for r in rows], label=target, **style)
    for axis, label in zip(axes, ["forward+backward time (ms)", "peak memory (MB)"]):
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("sequence length N")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def sweep_title(config: dict) -> str:
    """Plot title of a sweep from its config (``causal``, ``batch``, ``dim``, ``heads``, ``dtype``, ``device``)."""
    mode = "causal" if config["causal"] else "non-causal"
    return (f"{mode}, B={config['batch']}, D={config['dim']}, H={config['heads']}, {config['dtype']}, "
            f"{config['device']}, fwd+bwd")
