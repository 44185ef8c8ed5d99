"""Command line of the vision suite (Primal-Attention, Chen et al., NeurIPS 2023): ``python -m vision <command>``.

Commands: ``train`` (DeiT / Primal.+DeiT training, resumable, DDP through torchrun), ``evaluate`` (top-1/top-5
of a checkpoint), ``spectrum`` (Figure 2's cumulative singular-value curves), ``compare`` (a table of runs),
``report`` (a Markdown page of runs beside the paper's Table 7a),
``make-imagenet100`` (the IN-100 subset folder from ImageNet-1K by links) and ``models`` (the registered attentions
and models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import timm
import torch
from torch.utils.data import DataLoader

import core
from core.engine import is_main_process, select_device, write_json
from vision.config import add_config_arguments, config_from_args

EPILOG = """examples:
  python -m vision train --config fashion_mnist_primal --max-minutes 10
  python -m vision train --config primal_deit_small_in100 --data-path /data/imagenet100
  torchrun --nproc_per_node 2 -m vision train --config deit_small_in100 --data-path /data/imagenet100
  python -m vision spectrum --checkpoint runs/vision/a/best.pt runs/vision/b/best.pt --label DeiT Primal
  python -m vision make-imagenet100 --imagenet /data/imagenet --output /data/imagenet100
"""


def _train(args: argparse.Namespace) -> int:
    from vision.train import run

    result = run(config_from_args(args))
    if not is_main_process():
        return 0
    final = result["final"]
    print(json.dumps({"status": result["status"], "top1": final.get("top1"), "top5": final.get("top5"),
                      "best_top1": result["best"]["top1"], "result": str(Path(result["config"]["output_dir"]) /
                                                                            "result.json")}))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from vision.data import build_dataset, build_transform
    from vision.engine import evaluate
    from vision.spectrum import load_trained_model

    model, config, info = load_trained_model(args.checkpoint, args.data_path)
    img_size = config.img_size or info.img_size
    dataset = build_dataset(config.dataset, config.data_path, "val", transform=build_transform(False, img_size, info, config))
    device = select_device(args.device)
    loader = DataLoader(dataset, batch_size=args.batch_size, num_workers=args.workers)
    metrics = evaluate(model.to(device), loader, device, amp=device.type == "cuda", max_batches=args.max_batches)
    result = {"checkpoint": args.checkpoint, "dataset": config.dataset, "model": config.model, **metrics}
    output = Path(args.output or Path(args.checkpoint).with_name("evaluation.json"))
    write_json(result, output)
    print(json.dumps(result))
    return 0


def _spectrum(args: argparse.Namespace) -> int:
    from vision.spectrum import run_spectrum

    result = run_spectrum(args.checkpoint, args.label, args.output, num_images=args.num_images, which=args.blocks,
                          data_path=args.data_path)
    write_json(result, Path(args.output).with_suffix(".json"))
    for name, value in result["first_index"].items():
        print(f"{name}: cumulative singular value at k=1 is {value:.3f}")
    print(f"plot: {result['plot']}  data: {Path(args.output).with_suffix('.json')}")
    return 0


def _make_imagenet100(args: argparse.Namespace) -> int:
    from vision.imagenet100 import build_imagenet100

    summary = build_imagenet100(args.imagenet, args.output, tuple(args.splits), copy=args.copy)
    write_json({"imagenet": args.imagenet, "output": args.output, "summary": summary}, Path(args.output) / "imagenet100.json")
    print(json.dumps(summary))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from vision.plots import results_table
    from vision.report import run_summary

    rows = [{key: value for key, value in run_summary(run).items() if key != "config"} for run in args.runs]
    print(results_table(rows))
    if args.output:
        write_json({"runs": rows}, args.output)
    return 0


def _report(args: argparse.Namespace) -> int:
    from vision.report import write_report

    labels = args.label or [Path(run).name for run in args.runs]
    path = write_report(args.runs, labels, args.output, title=args.title, spectrum=args.spectrum, target=args.target,
                        note=args.note, command=args.command)
    print(path.read_text())
    return 0


def _models(args: argparse.Namespace) -> int:
    listing = {
        "attentions": {name: core.attention_info(name).summary for name in core.list_attentions()},
        "primal_models": timm.list_models("primal_deit_*"),
        "deit_models": timm.list_models("deit_*"),
    }
    print(json.dumps(listing, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vision", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="command")

    train = commands.add_parser("train", help="train DeiT / Primal.+DeiT (resumable; DDP under torchrun)",
                                description="Train with DeiT's recipe from timm plus eta * KSVD loss. Settings: "
                                            "defaults < --config JSON < flags.")
    add_config_arguments(train)
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="top-1/top-5 of a trained checkpoint on its validation split")
    evaluate.add_argument("--checkpoint", required=True, help="best.pt or checkpoints/checkpoint-*.pt of a training run")
    evaluate.add_argument("--data-path", help="dataset folder (default: the one stored in the checkpoint)")
    evaluate.add_argument("--batch-size", type=int, default=128, help="images per batch (default: 128)")
    evaluate.add_argument("--workers", type=int, default=4, help="data-loading workers (default: 4)")
    evaluate.add_argument("--max-batches", type=int, default=0, help="evaluate at most this many batches (0 = all)")
    evaluate.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    evaluate.add_argument("--output", help="result JSON (default: evaluation.json next to the checkpoint)")
    evaluate.set_defaults(handler=_evaluate)

    spectrum = commands.add_parser("spectrum", help="cumulative singular-value curves of attention (paper Figure 2)")
    spectrum.add_argument("--checkpoint", nargs="+", required=True, help="one or more training checkpoints to compare")
    spectrum.add_argument("--label", nargs="+", help="a name per checkpoint (default: the run folder's name)")
    spectrum.add_argument("--output", default="spectrum", help="output stem: writes <stem>.png and <stem>.json")
    spectrum.add_argument("--num-images", type=int, default=64, help="validation images to average over (default: 64)")
    spectrum.add_argument("--blocks", choices=("last", "all"), default="last",
                          help="last: the last canonical block and the primal block(s); all: every block")
    spectrum.add_argument("--data-path", help="dataset folder (default: the one stored in the checkpoint)")
    spectrum.set_defaults(handler=_spectrum)

    subset = commands.add_parser("make-imagenet100", help="build the ImageNet-100 folder from ImageNet-1K by links")
    subset.add_argument("--imagenet", required=True, help="ImageNet-1K root with train/<wnid>/ and val/<wnid>/")
    subset.add_argument("--output", required=True, help="where to create train/ and val/ of the 100 classes")
    subset.add_argument("--splits", nargs="+", default=["train", "val"], help="splits to build (default: train val)")
    subset.add_argument("--copy", action="store_true", help="copy class folders instead of symlinking them")
    subset.set_defaults(handler=_make_imagenet100)

    compare = commands.add_parser("compare", help="a table of finished runs (accuracy, throughput, memory)")
    compare.add_argument("runs", nargs="+", help="run folders (or their result.json files)")
    compare.add_argument("--output", help="also write the rows as JSON to this file")
    compare.set_defaults(handler=_compare)

    report = commands.add_parser("report", help="a Markdown page of finished runs beside the paper's Table 7a",
                                 description="Write a Markdown report (e.g. docs/results/vision.md) of training runs, "
                                             "with their spectrum plot and the paper's ImageNet numbers.")
    report.add_argument("runs", nargs="+", help="run folders, the baseline first and Primal.+DeiT last")
    report.add_argument("--label", nargs="+", help="a display name per run (default: the folder names)")
    report.add_argument("--output", required=True, help="the Markdown file to write (its folder is created)")
    report.add_argument("--title", default="Vision results", help="heading of the page")
    report.add_argument("--spectrum", help="output stem of `python -m vision spectrum` (its .json and .png)")
    report.add_argument("--target", type=float, help="test top-1 (%%) the last run should reach; the page says if it did")
    report.add_argument("--note", default="", help="text under the heading, e.g. how the runs shared the machine")
    report.add_argument("--command", default="", help="the command that produced the runs, quoted on the page")
    report.set_defaults(handler=_report)

    models = commands.add_parser("models", help="list the core attentions and the registered timm models")
    models.set_defaults(handler=_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (FileNotFoundError, ValueError, KeyError) as error:
        if os.environ.get("VISION_DEBUG"):
            raise
        print(f"error: {error}\n(set VISION_DEBUG=1 to see the traceback)", file=sys.stderr)
        return 2
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
