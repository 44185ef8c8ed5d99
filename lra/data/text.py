"""Readers of the textual LRA tasks in their release formats (Tay et al., ICLR 2021), producing compact arrays.

- ListOps: ``listops-1000/basic_{train,val,test}.tsv`` with header ``Source<TAB>Target``.
- Text: IMDB reviews from the raw ``aclImdb/{train,test}/{pos,neg}/*.txt`` folders, byte level (id = byte + 1);
  as in LRA, dev = test = the IMDB test split.
- Retrieval: AAN pairs ``new_aan_pairs.{train,eval,test}.tsv``, no header, five columns
  ``label id1 id2 text1 text2``, byte level per document.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lra.data import listops
from lra.data.arrays import DataError, pad_ids

LISTOPS_FILES = {"train": "basic_train.tsv", "dev": "basic_val.tsv", "test": "basic_test.tsv"}
AAN_FILES = {"train": "new_aan_pairs.train.tsv", "dev": "new_aan_pairs.eval.tsv", "test": "new_aan_pairs.test.tsv"}
IMDB_FOLDERS = {"train": "train", "dev": "test", "test": "test"}


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise DataError(f"{what}: {path} does not exist; point --raw at the folder that holds it (see docs/lra.md)")


def byte_ids(text: str | bytes, max_length: int) -> np.ndarray:
    """Byte-level ids (byte + 1, so 0 stays padding) of the first ``max_length`` bytes, as int16."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return np.frombuffer(data[:max_length], dtype=np.uint8).astype(np.int16) + 1


def read_listops_tsv(
    path: str | Path, max_length: int = 2000, drop_brackets: bool = False, verify: bool = True, progress: bool = True
) -> dict[str, np.ndarray]:
    """Read one ListOps TSV into ``input_ids (M, max_length)``, ``lengths``, ``labels``.

    Args:
        path: the TSV with header ``Source<TAB>Target``.
        max_length: tokens kept per example (LRA: 2000).
        drop_brackets: reproduce the bracket-dropping pipeline of the copied LRA code (see
            :func:`lra.data.listops.tokenize`).
        verify: check every label with the independent evaluator.

    Raises:
        DataError: missing file, bad header, bad row, or a label that disagrees with the expression.
    """
    path = Path(path)
    _require_file(path, "ListOps TSV")
    sequences, labels = [], []
    csv.field_size_limit(sys.maxsize)
    with path.open(newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:2]] != ["Source", "Target"]:
            raise DataError(f"{path}: expected the header 'Source<TAB>Target', got {header!r}")
        for line, row in enumerate(tqdm(reader, desc=path.name, unit=" rows", disable=not progress), start=2):
            if len(row) != 2:
                raise DataError(f"{path}:{line}: expected 2 tab-separated columns (Source, Target), got {len(row)}")
            source, target = row
            try:
                label = int(target)
                ids = listops.tokenize(source, drop_brackets=drop_brackets)
            except ValueError as error:
                raise DataError(f"{path}:{line}: {error}") from error
            if not 0 <= label <= 9:
                raise DataError(f"{path}:{line}: ListOps targets are digits 0-9, got {label}")
            if verify:
                try:
                    value = listops.evaluate_expression(source)
                except ValueError as error:
                    raise DataError(f"{path}:{line}: {error}") from error
                if value != label:
                    raise DataError(f"{path}:{line}: the expression evaluates to {value} but the target is {label}")
            sequences.append(ids)
            labels.append(label)
    if not labels:
        raise DataError(f"{path}: no examples after the header")
    ids, lengths = pad_ids(sequences, max_length)
    return {"input_ids": ids, "lengths": lengths, "labels": np.asarray(labels, dtype=np.int64)}


def read_imdb_split(folder: str | Path, max_length: int = 4000, progress: bool = True) -> dict[str, np.ndarray]:
    """Read ``aclImdb/<split>`` (sub-folders ``pos`` = 1 and ``neg`` = 0) at byte level, in sorted file order.

    Raises:
        DataError: if a class folder is missing or holds no ``.txt`` files.
    """
    folder = Path(folder)
    sequences, labels = [], []
    for name, label in (("neg", 0), ("pos", 1)):
        class_folder = folder / name
        if not class_folder.is_dir():
            raise DataError(f"IMDB: {class_folder} does not exist; --raw must be the aclImdb folder with train/ and test/")
        files = sorted(class_folder.glob("*.txt"))
        if not files:
            raise DataError(f"IMDB: {class_folder} holds no .txt reviews")
        for file in tqdm(files, desc=f"{folder.name}/{name}", disable=not progress):
            sequences.append(byte_ids(file.read_bytes(), max_length))
            labels.append(label)
    ids, lengths = pad_ids(sequences, max_length)
    return {"input_ids": ids, "lengths": lengths, "labels": np.asarray(labels, dtype=np.int64)}


def read_aan_tsv(path: str | Path, max_length: int = 4000, progress: bool = True) -> dict[str, np.ndarray]:
    """Read one AAN retrieval TSV (``label id1 id2 text1 text2``) into a pair split.

    Raises:
        DataError: missing file, a row without five columns, or a label that is not 0 or 1.
    """
    path = Path(path)
    _require_file(path, "AAN retrieval TSV")
    first, second, labels = [], [], []
    with path.open("rb") as handle:
        for line, raw in enumerate(tqdm(handle, desc=path.name, unit=" rows", disable=not progress), start=1):
            raw = raw.rstrip(b"\r\n")
            if not raw:
                continue
            columns = raw.split(b"\t")
            if len(columns) != 5:
                raise DataError(
                    f"{path}:{line}: expected 5 tab-separated columns (label, id1, id2, text1, text2), got {len(columns)}"
                )
            try:
                label = float(columns[0])
            except ValueError as error:
                raise DataError(f"{path}:{line}: the label {columns[0][:20]!r} is not a number") from error
            if label not in (0.0, 1.0):
                raise DataError(f"{path}:{line}: retrieval labels are 0 or 1, got {label}")
            first.append(byte_ids(columns[3], max_length))
            second.append(byte_ids(columns[4], max_length))
            labels.append(int(label))
    if not labels:
        raise DataError(f"{path}: no rows")
    ids_0, lengths_0 = pad_ids(first, max_length)
    ids_1, lengths_1 = pad_ids(second, max_length)
    return {
        "input_ids_0": ids_0,
        "input_ids_1": ids_1,
        "lengths_0": lengths_0,
        "lengths_1": lengths_1,
        "labels": np.asarray(labels, dtype=np.int64),
    }
