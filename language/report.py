"""The markdown report of ``benchmark-kjv`` (Primal.+ vs softmax transformer_lm on KJV), with the paper's
WikiText-103 result (Chen et al., NeurIPS 2023, Table 7b) for context."""

from __future__ import annotations

# Table 7b: test perplexity after 150k updates of a 6-layer transformer_lm on WikiText-103
PAPER_WIKITEXT103 = (
    ("Trans. (softmax transformer_lm)", 33.0),
    ("Flowformer", 30.8),
    ("Primal.+Trans. (last layer Primal-Attention)", 31.0),
)
LABELS = {"kjv-primal": "Primal.+ (`kjv-primal`)", "kjv-softmax": "softmax (`kjv-softmax`)"}


def _fmt(value, spec: str = "", missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def render_report(result: dict) -> str:
    """Markdown for a ``benchmark-kjv`` result (the dict written to ``benchmark.json``)."""
    models = result["models"]
    ratio = result["ratio_primal_over_softmax"]
    verdict = "**passed**" if result["passed"] else "**missed**"
    lines = [
        "# Language suite: measured results",
        "",
        "Written by `python -m language benchmark-kjv`; rerun it to refresh this file (the raw record is "
        "`benchmark.json` in the run folder).",
        "",
        "## KJV: Primal.+ vs softmax transformer_lm, same size and training budget on CPU",
        "",
        f"Run started {result['started']}; {result['minutes_per_model']:g} minutes of training per model, "
        f"{result['schedule']} schedule with {result['threads_per_model']} thread(s) for each, seed "
        f"{result['seed']}, on a {result['cpu_count']}-core machine (load average {result['load_average_before'][0]:.2f} "
        f"before, {result['load_average_after'][0]:.2f} after). Validation perplexity: `fairseq-eval-lm` on the "
        f"whole validation split (checkpoint at the end of the budget, 128-token blocks, no extra context); "
        f"perplexity = 2^(loss in bits) = e^(loss in nats).",
        "",
        "| model | attention | parameters | updates | epochs | words/s | valid loss (bits/token) | valid ppl | "
        "trainer's valid ppl |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in models.items():
        attention = "softmax, last layer Primal-Attention" if m["arch"] == "transformer_lm_primal" else "softmax"
        lines.append(
            f"| {LABELS.get(name, name)} | {attention} | {_fmt(m['parameters'], ',')} | {m['updates']} | "
            f"{_fmt(m['epochs'], 'g')} | {_fmt(m['words_per_second'], ',.0f')} | {m['valid_loss_base2']:.3f} | "
            f"{m['valid_ppl']:.2f} | {_fmt(m['trainer_valid_ppl'], '.2f')} |"
        )
    lines += [
        "",
        f"Ratio primal / softmax: **{ratio:.3f}**; target <= {1 + result['tolerance']:.2f}: {verdict}.",
        "",
    ]
    primal = models.get("kjv-primal", {})
    if primal.get("ksvd"):
        ksvd = primal["ksvd"]
        lines.append(f"KSVD: eta = {ksvd.get('ksvd-eta')}, scaling `{ksvd.get('ksvd-scaling')}` "
                     "(`token`: eta x L_KSVD added per target token).")
    if result.get("overrides"):
        lines.append(f"Flags changed for both models: `{' '.join(result['overrides'])}`.")
    if result.get("primal_overrides"):
        lines.append(f"Flags changed for the primal model only: `{' '.join(result['primal_overrides'])}`.")
    lines += [
        "",
        "Command: `python -m language benchmark-kjv --minutes "
        f"{result['minutes_per_model']:g} --schedule {result['schedule']}"
        + "".join(f" --set {o}" for o in result.get("overrides", []))
        + "".join(f" --set-primal {o}" for o in result.get("primal_overrides", []))
        + "` (configurations `language/configs/kjv-*.json`).",
        "",
        "## For context: the paper on WikiText-103 (Table 7b)",
        "",
        "| model | test ppl |",
        "|---|---|",
        *(f"| {label} | {ppl:.1f} |" for label, ppl in PAPER_WIKITEXT103),
        "",
        f"There Primal.+ / softmax = {PAPER_WIKITEXT103[2][1] / PAPER_WIKITEXT103[0][1]:.3f}, after 150k updates of "
        "a 6-layer, 512-wide model on GPUs; the KJV run above is a 3-layer, 128-wide model after minutes on CPU, so "
        "only the ratio is comparable, not the perplexities.",
        "",
    ]
    return "\n".join(lines)
