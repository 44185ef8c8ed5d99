"""``python -m core.bench``: time and peak memory of forward+backward per mechanism and sequence length.

Every configuration runs in a fresh process. Prints a table, writes ``bench.json``, ``bench.md`` and ``bench.png``
(log-log time and memory vs N) to ``--out``. Ratios are against exact softmax (SDPA) of the same run and, with
``--floor``, against each mechanism's own projection layers run alone (its GEMM floor).

``--approx`` runs the random-feature accuracy sweep instead (:mod:`core.bench.approx`); ``--report FOLDER`` runs
every core benchmark and writes the results page (:mod:`core.bench.publish`).
"""

from __future__ import annotations

import argparse
import json
import sys

from core.bench.peers import PEERS
from core.bench.report import format_table, sweep_title, write_sweep
from core.bench.runner import choose_targets, run_sweep

QUICK_LENGTHS = [1024, 4096]
DEFAULT_LENGTHS = [1024, 2048, 4096, 8192, 16384]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m core.bench",
        description="Benchmark attention mechanisms: forward+backward time and peak memory vs sequence length.",
    )
    parser.add_argument("--mechanisms", nargs="+", default=None,
                        help="registry names to run (default: every registered mechanism able to run the mode)")
    parser.add_argument("--lengths", nargs="+", type=int, default=None,
                        help=f"sequence lengths N (default {DEFAULT_LENGTHS}; --quick uses {QUICK_LENGTHS})")
    parser.add_argument("--batch", type=int, default=1, help="batch size B (default 1)")
    parser.add_argument("--dim", type=int, default=512, help="model width D (default 512)")
    parser.add_argument("--heads", type=int, default=8, help="number of heads H (default 8)")
    parser.add_argument("--causal", action="store_true", help="benchmark the causal forms")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"],
                        help="parameter and input dtype (default float32)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads per run (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats after one warm-up; median is reported")
    parser.add_argument("--floor", action="store_true",
                        help="also time each mechanism's projection layers alone (its GEMM floor)")
    parser.add_argument("--peers", action="store_true",
                        help=f"also run the installed public packages ({', '.join(PEERS)})")
    parser.add_argument("--options", default="{}",
                        help='JSON of per-mechanism options, e.g. \'{"primal": {"low_rank": 30}}\'')
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before one configuration is abandoned")
    parser.add_argument("--quick", action="store_true",
                        help=f"a two-minute tour: lengths {QUICK_LENGTHS}, one repeat (with --report: every part "
                        "shrunk; still one process per mechanism and length, so tens of minutes on two cores)")
    parser.add_argument("--out", default="runs/bench", help="folder for bench.json and bench.png (default runs/bench)")
    parser.add_argument("--approx", action="store_true",
                        help="random-feature accuracy (and --timing) sweep instead; see python -m core.bench --approx --help")
    parser.add_argument("--report", default=None, metavar="FOLDER",
                        help="run every core benchmark and write the results page FOLDER/core.md with its tables and "
                        "plots (core_*): time and memory vs N of every mechanism, non-causal and causal (honouring "
                        "--mechanisms, --lengths, --device, ...), the --approx accuracy sweep and the spectra; e.g. "
                        "docs/results. Hours on a CPU; add --quick for a smoke run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--approx" in argv:
        from core.bench.approx import main as approx_main

        return approx_main([arg for arg in argv if arg != "--approx"])
    args = parse_args(argv)
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as error:
        raise SystemExit(f"error: --options is not valid JSON ({error})") from error
    lengths = args.lengths or (QUICK_LENGTHS if args.quick else DEFAULT_LENGTHS)
    repeats = 1 if args.quick else args.repeats
    if args.report:
        from core.bench.publish import publish

        return publish(args, argv, options, lengths, repeats)
    targets = choose_targets(args)
    common = dict(batch=args.batch, dim=args.dim, heads=args.heads, causal=args.causal, dtype=args.dtype,
                  device=args.device, repeats=repeats, threads=args.threads)
    results = run_sweep(targets, lengths, common, options, timeout=args.timeout)
    print(format_table(results))
    stem = "bench_causal" if args.causal else "bench"
    written = write_sweep(results, {**common, "lengths": lengths, "options": options}, args.out, stem, sweep_title(common))
    print(f"wrote {', '.join(str(path) for path in written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
