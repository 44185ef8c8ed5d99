"""Training configuration of the vision suite: DeiT's recipe as defaults, JSON files per paper setting, CLI flags.

Defaults are the DeiT-S recipe the Primal-Attention CV code keeps (Chen et al., NeurIPS 2023, section 5.4): 300
epochs, AdamW with lr 5e-4 per 512 images, weight decay 0.05, cosine schedule with 5 warm-up epochs, RandAugment,
random erasing 0.25, Mixup 0.8 / CutMix 1.0, label smoothing 0.1, repeated augmentation, stochastic depth 0.1, model
EMA 0.99996, and the KSVD loss with eta = 0.05 on the primal blocks. Precedence: defaults < ``--config`` file <
explicit flags.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).with_name("configs")


def _opt(default: Any, help: str) -> Any:
    if isinstance(default, dict | list):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """Every setting of ``python -m vision train``; each field is a flag (``low_rank`` -> ``--low-rank``)."""

    # data
    dataset: str = _opt("imagenet100", "imagenet | imagenet100 | folder | fashion_mnist")
    data_path: str | None = _opt(None, "dataset root: <root>/{train,val}/<class>/<image>, or the Fashion-MNIST idx folder")
    img_size: int | None = _opt(None, "input resolution (default: the dataset's, 224 for ImageNet, 28 for Fashion-MNIST)")
    workers: int = _opt(8, "data-loading worker processes per training process")
    max_train_batches: int = _opt(0, "stop each epoch after this many batches (0 = the whole epoch; for smoke runs)")
    max_eval_batches: int = _opt(0, "evaluate on at most this many batches (0 = the whole split)")
    # model
    model: str = _opt("primal_deit_small_patch16_224", "timm model name: primal_deit_{tiny,small,base}_patch16_224, "
                      "deit_*, vit_* (any ViT whose blocks take attn_layer)")
    attention: str = _opt("softmax", "core registry attention of the canonical blocks (see core.list_attentions())")
    attention_options: dict = _opt({}, "JSON options for that attention, e.g. '{\"attention_dropout\": 0.0}'")
    num_primal_blocks: int | None = _opt(None, "last k blocks use Primal-Attention (default: 1 for primal_* models, else 0)")
    low_rank: int = _opt(96, "s, singular directions per head in the primal blocks (paper: 96)")
    rank_multi: int = _opt(10, "primal blocks sample n = min(N, s * rank_multi) tokens (paper: 10)")
    patch_size: int | None = _opt(None, "override the model's patch size")
    embed_dim: int | None = _opt(None, "override the model's width")
    depth: int | None = _opt(None, "override the model's number of blocks")
    num_heads: int | None = _opt(None, "override the model's number of heads")
    mlp_ratio: float | None = _opt(None, "override the MLP width / model width (DeiT: 4)")
    drop_path: float = _opt(0.1, "stochastic depth rate")
    drop: float = _opt(0.0, "dropout rate")
    pretrained_checkpoint: str | None = _opt(None, "DeiT/ViT checkpoint (timm layout) loaded into the canonical blocks")
    # optimisation
    epochs: int = _opt(300, "training epochs")
    batch_size: int = _opt(512, "images per process and step (paper: 512 per GPU on 2 GPUs)")
    lr: float | None = _opt(None, "peak learning rate (default: lr_base * global batch / lr_base_size)")
    lr_base: float = _opt(5e-4, "learning rate per lr_base_size images (DeiT: 5e-4 per 512)")
    lr_base_size: int = _opt(512, "batch size that lr_base refers to")
    opt: str = _opt("adamw", "timm optimizer name (create_optimizer_v2)")
    opt_eps: float = _opt(1e-8, "optimizer epsilon")
    momentum: float = _opt(0.9, "momentum (SGD-type optimizers)")
    weight_decay: float = _opt(0.05, "weight decay (not on biases and norms)")
    clip_grad: float | None = _opt(None, "clip the gradient norm to this value (DeiT: none)")
    sched: str = _opt("cosine", "timm scheduler name (create_scheduler_v2), stepped every update")
    warmup_epochs: float = _opt(5, "linear warm-up epochs")
    warmup_lr: float = _opt(1e-6, "learning rate at the start of warm-up")
    min_lr: float = _opt(1e-5, "final learning rate of the cosine schedule")
    eta: float = _opt(0.05, "weight of the KSVD loss of the primal blocks (paper: 0.05)")
    # augmentation and regularisation
    auto_augment: str = _opt("rand-m9-mstd0.5-inc1", "timm RandAugment policy ('none' = off)")
    color_jitter: float = _opt(0.3, "colour jitter (only used without RandAugment, as in timm)")
    interpolation: str = _opt("bicubic", "resize interpolation")
    reprob: float = _opt(0.25, "random-erasing probability")
    remode: str = _opt("pixel", "random-erasing fill mode")
    recount: int = _opt(1, "random-erasing count")
    train_crop: str = _opt("auto", "rrc (RandomResizedCrop) | pad (random crop of a padded image) | auto (pad if <= 32 "
                           "px) | none (the whole image, resized as for evaluation)")
    hflip: float = _opt(0.5, "horizontal-flip probability")
    eval_crop_pct: float = _opt(0.875, "centre-crop fraction at evaluation (224/256)")
    mixup: float = _opt(0.8, "Mixup alpha (0 = off)")
    cutmix: float = _opt(1.0, "CutMix alpha (0 = off)")
    mixup_prob: float = _opt(1.0, "probability of applying Mixup or CutMix to a batch")
    mixup_switch_prob: float = _opt(0.5, "probability of CutMix instead of Mixup when both are on")
    smoothing: float = _opt(0.1, "label smoothing")
    repeated_aug: bool = _opt(True, "repeated augmentation (3 views per image spread over processes; distributed only)")
    model_ema: bool = _opt(True, "keep an exponential moving average of the weights")
    model_ema_decay: float = _opt(0.99996, "EMA decay")
    eval_ema: bool = _opt(False, "also evaluate the EMA weights (the paper reports the raw model)")
    # system
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N")
    threads: int = _opt(0, "CPU threads for torch (0 = torch's default; 1 is fastest on a crowded machine)")
    amp: bool = _opt(True, "mixed precision (float16 autocast + grad scaling) on CUDA; ignored on CPU")
    seed: int = _opt(0, "random seed (offset by the rank)")
    output_dir: str = _opt("runs/vision/default", "run folder: logs, metrics, checkpoints, result.json, plots")
    resume: str = _opt("auto", "auto (latest checkpoint in the run folder) | none | a checkpoint path")
    save_every_steps: int = _opt(0, "also checkpoint every this many updates (0 = at epoch ends only)")
    keep_checkpoints: int = _opt(2, "how many recent checkpoints to keep")
    max_minutes: float = _opt(0.0, "wall-clock budget: checkpoint, evaluate and stop after this many minutes (0 = none)")
    time_schedule: bool = _opt(False, "with --max-minutes: advance warm-up and cosine decay with elapsed time instead of "
                               "updates, so the schedule ends when the budget does (epochs is then an upper bound)")
    eval_every: int = _opt(1, "evaluate every this many epochs (and after the last)")
    dist_eval: bool = _opt(True, "split evaluation over processes")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _parser_type(default: Any, annotation: str):
    if isinstance(default, bool):
        return _bool
    if isinstance(default, dict):
        return json.loads
    if isinstance(default, float) or "float" in annotation:
        return float
    if isinstance(default, int) or "int" in annotation:
        return int
    return str


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`TrainConfig` field; defaults are left unset so a ``--config`` file can fill them."""
    parser.add_argument("--config", help="JSON file of settings (see vision/configs/); flags given here override it")
    for item in fields(TrainConfig):
        default = item.default if item.default is not MISSING else item.default_factory()
        kind = _parser_type(default, str(item.type))
        meta = "JSON" if kind is json.loads else ("BOOL" if kind is _bool else None)
        parser.add_argument(
            _flag(item.name), dest=item.name, type=kind, default=None, metavar=meta,
            help=f"{item.metadata['help']} (default: {json.dumps(default)})",
        )


def resolve_config_path(path: str | os.PathLike) -> Path:
    """A config file path, or the name of a shipped config (``deit_small_in100`` -> ``vision/configs/...json``)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = CONFIG_DIR / f"{candidate.stem}.json"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
    raise FileNotFoundError(f"config {path} not found; give a JSON file or one of the shipped configs {names}")


def config_from_dict(values: dict[str, Any], source: str = "config") -> TrainConfig:
    """Build a :class:`TrainConfig`, rejecting unknown keys with the list of known ones."""
    known = {item.name for item in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"{source}: unknown settings {unknown}; known settings are {sorted(known)}")
    return TrainConfig(**values)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """Defaults, then the ``--config`` file, then every flag that was given."""
    values: dict[str, Any] = {}
    if args.config:
        path = resolve_config_path(args.config)
        try:
            values.update(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        values.pop("_comment", None)
    for item in fields(TrainConfig):
        given = getattr(args, item.name, None)
        if given is not None:
            values[item.name] = given
    return config_from_dict(values, source=str(args.config or "flags"))
