"""Corpora in the WikiText layout (``wiki.{train,valid,test}.tokens``) binarised with ``fairseq-preprocess``.

This is the data step of the Primal-Attention language-modelling experiment (Chen et al., NeurIPS 2023): fairseq's
``prepare-wikitext-103.sh`` followed by ``fairseq-preprocess --only-source``. Any corpus in that layout (WikiText-2,
WikiText-103, the KJV written by :mod:`language.data.kjv`) is handled the same way.
"""

from __future__ import annotations

from pathlib import Path

from language.data.kjv import SPLITS
from language.process import fairseq_executable

BINARY_FILES = ("dict.txt", "train.bin", "train.idx", "valid.bin", "valid.idx")


class CorpusLayoutError(ValueError):
    """A directory is not in the expected layout."""


def token_files(raw_dir: Path) -> dict[str, Path]:
    """The ``wiki.{split}.tokens`` files of ``raw_dir``.

    Raises:
        CorpusLayoutError: naming the missing or empty files and the expected layout.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise CorpusLayoutError(f"{raw_dir} is not a directory; expected a folder with wiki.train.tokens, "
                                "wiki.valid.tokens and wiki.test.tokens (the WikiText-103 'tokens' release)")
    files = {split: raw_dir / f"wiki.{split}.tokens" for split in SPLITS}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        present = sorted(p.name for p in raw_dir.iterdir())[:10]
        raw_hint = ""
        if any(name.endswith(".raw") for name in present):
            raw_hint = " (found *.raw files: use the tokenised release wikitext-103-v1 with wiki.*.tokens)"
        raise CorpusLayoutError(
            f"missing {', '.join(missing)}{raw_hint}; expected wiki.train.tokens, wiki.valid.tokens, wiki.test.tokens "
            f"in {raw_dir}, which holds {present}"
        )
    empty = [str(path) for path in files.values() if path.stat().st_size == 0]
    if empty:
        raise CorpusLayoutError(f"empty corpus files: {', '.join(empty)}")
    return files


def preprocess_command(raw_dir: Path, dest_dir: Path, workers: int = 1, vocab_threshold: int = 0) -> list[str]:
    """The ``fairseq-preprocess --only-source`` command that binarises a WikiText-layout corpus."""
    files = token_files(raw_dir)
    command = [
        fairseq_executable("fairseq-preprocess"), "--only-source",
        "--trainpref", str(files["train"]), "--validpref", str(files["valid"]), "--testpref", str(files["test"]),
        "--destdir", str(dest_dir), "--workers", str(workers),
    ]
    if vocab_threshold > 0:
        command += ["--thresholdsrc", str(vocab_threshold)]
    return command


def check_binarized(data_dir: Path) -> None:
    """Check that ``data_dir`` holds a fairseq-preprocess output (dict + train/valid binaries).

    Raises:
        CorpusLayoutError: naming the missing files and the command that makes them.
    """
    data_dir = Path(data_dir)
    missing = [name for name in BINARY_FILES if not (data_dir / name).is_file()]
    if missing:
        raise CorpusLayoutError(
            f"{data_dir} is not a binarised corpus: missing {', '.join(missing)}; create it with "
            "'python -m language prepare-wikitext --raw-dir RAW --dest DIR' (or prepare-kjv --dest DIR)"
        )
