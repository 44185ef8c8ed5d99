"""Save the queries, keys and values one attention layer of a trained run computes on the test file.

The file feeds the random-feature accuracy sweep on real activations:

    python -m timeseries --model transformer --seeds 666 --out runs/ts
    python -m timeseries.activations runs/ts/JapaneseVowels/paper/transformer/seed666 --out runs/acts.pt
    python -m core.bench --approx --activations runs/acts.pt
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from core.analysis.activations import collect_projections, save_projections
from timeseries.batching import evaluation_batches, gather
from timeseries.data import load_uea
from timeseries.train import BEST_WEIGHTS, RESULT, build_model


def load_trained_run(run_dir: str | Path, data_dir: str | None = None):
    """The model of a finished run (its selected weights, eval mode) and its data set.

    A holdout run's data are read with the validation split its ``result.json`` records (runs written before
    the split was recorded get ``load_uea``'s defaults, which are also the command line's).

    Raises:
        FileNotFoundError: when ``run_dir`` lacks ``result.json`` or ``model_best.pt`` (the run has not finished).
    """
    run_dir = Path(run_dir)
    for name in (RESULT, BEST_WEIGHTS):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name} not found: expected the folder of a finished run "
                                    "(python -m timeseries writes <out>/<dataset>/<protocol>/<model>/seed<seed>)")
    result = json.loads((run_dir / RESULT).read_text())
    identity = result["identity"]
    split = {key: result["data"][key] for key in ("val_ratio", "split_seed") if key in result["data"]}
    data = load_uea(identity["dataset"], data_dir, identity["protocol"], **split)
    model = build_model(identity["settings"], identity["model"], data)
    model.load_state_dict(torch.load(run_dir / BEST_WEIGHTS, map_location="cpu"))
    return model.eval(), data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m timeseries.activations",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="folder of a finished run (holds result.json and model_best.pt)")
    parser.add_argument("--layer", type=int, default=0, help="which attention layer, in model order (default 0)")
    parser.add_argument("--max-series", type=int, default=128,
                        help="test series to run, the longest first (default 128)")
    parser.add_argument("--data-dir", default=None,
                        help="root of the Multivariate2018_ts archive (default: the data shipped with sktime)")
    parser.add_argument("--out", default="runs/activations.pt", help="output file (default runs/activations.pt)")
    args = parser.parse_args(argv)
    try:
        model, data = load_trained_run(args.run_dir, args.data_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    longest = torch.argsort(data.test.lengths, descending=True, stable=True)[: args.max_series]
    batches = [gather(data.test, longest[index], torch.device("cpu"))[:2]
               for index in evaluation_batches(data.test.lengths[longest], 64)]
    records = collect_projections(model, batches)
    names = list(records)
    if not 0 <= args.layer < len(names):
        print(f"error: --layer {args.layer} out of range: the model has {len(names)} attention layers {names}",
              file=sys.stderr)
        return 2
    record = records[names[args.layer]]
    path = save_projections(record, args.out)
    q = record["q"]
    print(f"wrote {path}: layer {names[args.layer]}, q/k/v {tuple(q.shape)}, {int(record['mask'].sum())} real tokens")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
