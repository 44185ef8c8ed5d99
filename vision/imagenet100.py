"""ImageNet-100: the 100-class ImageNet subset of CMC (Tian et al., 2019) used by Primal-Attention (Chen et al.,
NeurIPS 2023, Table 7a).

The class list ships as ``imagenet100_classes.txt`` (one WordNet id per line, the order of the released list).
:func:`build_imagenet100` makes the subset folder from an ImageNet-1K ImageFolder by symbolic links (one per class
folder, so it takes seconds and no disk space) or by copying.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from tqdm import tqdm

CLASSES_FILE = Path(__file__).with_name("imagenet100_classes.txt")


def imagenet100_classes() -> list[str]:
    """The 100 WordNet ids (``n01558993``, ...) in the released order."""
    return CLASSES_FILE.read_text().split()


def _link_or_copy(source: Path, target: Path, copy: bool) -> str:
    if target.is_symlink() or target.exists():
        if target.is_symlink() and Path(os.readlink(target)) == source:
            return "kept"
        if copy and target.is_dir() and not target.is_symlink():
            return "kept"
        raise FileExistsError(f"{target} already exists and is not a link to {source}; remove it or pick another --output")
    if copy:
        shutil.copytree(source, target)
        return "copied"
    target.symlink_to(source, target_is_directory=True)
    return "linked"


def build_imagenet100(
    imagenet: str | os.PathLike, output: str | os.PathLike, splits: tuple[str, ...] = ("train", "val"), copy: bool = False
) -> dict[str, dict[str, int]]:
    """Create ``<output>/<split>/<wnid>`` for the 100 classes from ``<imagenet>/<split>/<wnid>``.

    Running it again is safe: existing correct links are kept.

    Args:
        imagenet: an ImageNet-1K ImageFolder root with ``train/`` and ``val/`` sorted into class folders.
        output: where the subset goes.
        splits: which splits to build.
        copy: copy the class folders instead of linking them.

    Returns:
        ``{split: {"linked"|"copied"|"kept": count}}``.

    Raises:
        FileNotFoundError: if a split or any of the 100 class folders is missing in ``imagenet``.
    """
    source_root = Path(imagenet).resolve()
    classes = imagenet100_classes()
    for split in splits:
        folder = source_root / split
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} does not exist: expected an ImageNet-1K folder with {split}/<wnid>/<image>")
        missing = [wnid for wnid in classes if not (folder / wnid).is_dir()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of the 100 ImageNet-100 classes are missing in {folder} (e.g. {missing[:3]}); "
                "the val split must be sorted into class folders first"
            )
    summary: dict[str, dict[str, int]] = {}
    for split in splits:
        target_folder = Path(output) / split
        target_folder.mkdir(parents=True, exist_ok=True)
        counts: dict[str, int] = {}
        for wnid in tqdm(classes, desc=f"imagenet100 {split}", unit="class"):
            action = _link_or_copy(source_root / split / wnid, target_folder / wnid, copy)
            counts[action] = counts.get(action, 0) + 1
        summary[split] = counts
    return summary
