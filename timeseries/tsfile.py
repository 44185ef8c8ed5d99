"""Reading UEA/UCR ``.ts`` files (the Multivariate2018_ts archive format) with sktime, with precise errors.

sktime's ``load_from_tsfile`` does the parsing. It reports malformed files without a file name or line
number ("inconsistent number of dimensions", "could not convert string to float") and accepts some bad
files silently (a class label not declared in the header). This module checks the header itself, asks
sktime to parse the data, and on failure scans the data lines to name the file and the line at fault.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED_TAGS = ("@problemname", "@univariate", "@classlabel")


class TsFileError(ValueError):
    """A malformed ``.ts`` file: names the file, the line (1-based, when known), what was wrong and what was expected."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class TsHeader:
    """What the header of a ``.ts`` file declares.

    Attributes:
        problem_name: ``@problemName``.
        dimensions: ``@dimensions`` (1 for univariate files that omit it), or None if not declared.
        class_labels: the labels listed after ``@classLabel true``, or None for files without labels.
        timestamps: ``@timeStamps true`` (values are ``(t,v)`` pairs).
        data_line: 1-based line number of ``@data``.
    """

    problem_name: str
    dimensions: int | None
    class_labels: tuple[str, ...] | None
    timestamps: bool
    data_line: int


@dataclass(frozen=True)
class TsData:
    """The series and labels of one ``.ts`` file.

    Attributes:
        series: one float64 array per instance, shaped ``(T_i, C)`` (missing values are NaN).
        labels: class label strings, ``(num_instances,)``.
        header: the parsed header.
        path: the file read.
    """

    series: list[np.ndarray]
    labels: np.ndarray
    header: TsHeader
    path: Path


def read_header(path: str | os.PathLike) -> TsHeader:
    """Parse and check the header of a ``.ts`` file (everything before ``@data``).

    Raises:
        FileNotFoundError: if the file does not exist.
        TsFileError: on a missing required tag, a bad ``@dimensions`` or ``@classLabel`` value, or no ``@data``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such .ts file")
    tags: dict[str, tuple[int, list[str]]] = {}
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("@"):
                raise TsFileError(
                    path, number, f"expected a header line starting with '@' or a '#' comment before @data, got {line[:60]!r}"
                )
            words = line.split()
            tag = words[0].lower()
            if tag == "@data":
                return _header_from_tags(path, tags, number)
            tags[tag] = (number, words[1:])
    missing = [t for t in REQUIRED_TAGS if t not in tags]
    detail = f"; the header also lacks {', '.join(missing)}" if missing else ""
    raise TsFileError(path, None, f"no @data line found: a .ts file needs a header ending in '@data' before the data{detail}")


def _header_from_tags(path: Path, tags: dict[str, tuple[int, list[str]]], data_line: int) -> TsHeader:
    missing = [t for t in REQUIRED_TAGS if t not in tags]
    if missing:
        raise TsFileError(
            path, data_line, f"header before @data lacks {', '.join(missing)} (required: {', '.join(REQUIRED_TAGS)})"
        )
    dimensions = None
    if "@dimensions" in tags:
        number, words = tags["@dimensions"]
        if len(words) != 1 or not words[0].isdigit() or int(words[0]) < 1:
            raise TsFileError(path, number, f"@dimensions needs one positive integer, got {' '.join(words)!r}")
        dimensions = int(words[0])
    elif _flag(tags["@univariate"][1]):
        dimensions = 1
    number, words = tags["@classlabel"]
    if not words or words[0].lower() not in ("true", "false"):
        raise TsFileError(path, number, f"@classLabel must be followed by true or false, got {' '.join(words)!r}")
    labels = None
    if words[0].lower() == "true":
        if len(words) < 2:
            raise TsFileError(path, number, "@classLabel true must list the class labels, e.g. '@classLabel true 1 2 3'")
        labels = tuple(words[1:])
    name = " ".join(tags["@problemname"][1])
    timestamps = _flag(tags.get("@timestamps", (0, ["false"]))[1])
    return TsHeader(problem_name=name, dimensions=dimensions, class_labels=labels, timestamps=timestamps, data_line=data_line)


def _flag(words: list[str]) -> bool:
    return bool(words) and words[0].lower() == "true"


def read_ts(path: str | os.PathLike) -> TsData:
    """Read a ``.ts`` file with sktime's reader and check it against its header.

    Args:
        path: the file, e.g. ``<root>/JapaneseVowels/JapaneseVowels_TRAIN.ts``.

    Returns:
        TsData: series as ``(T_i, C)`` float64 arrays (NaN where the file has ``?``) and string labels.

    Raises:
        FileNotFoundError: if the file does not exist.
        TsFileError: for a malformed header or data line, naming the file and the line.
    """
    from sktime.datasets import load_from_tsfile

    path = Path(path)
    header = read_header(path)
    if header.class_labels is None:
        raise TsFileError(path, None, "the file has no class labels (@classLabel false); classification needs labelled series")
    try:
        frame, labels = load_from_tsfile(str(path), return_data_type="nested_univ")
    except Exception as error:  # sktime raises OSError, ValueError, TypeError for bad files
        problem = locate_data_error(path, header)
        if problem is not None:
            raise problem from error
        raise TsFileError(path, None, f"sktime could not parse the file: {error}") from error
    labels = np.asarray(labels).astype(str)
    declared = set(header.class_labels)
    undeclared = sorted(set(labels) - declared)
    if undeclared:
        raise locate_data_error(path, header) or TsFileError(
            path, None, f"labels {undeclared} are not declared in @classLabel {' '.join(header.class_labels)}"
        )
    if header.dimensions is not None and frame.shape[1] != header.dimensions:
        raise locate_data_error(path, header) or TsFileError(
            path, None, f"@dimensions declares {header.dimensions} dimensions but the data lines have {frame.shape[1]}"
        )
    return TsData(series=_frame_to_arrays(frame), labels=labels, header=header, path=path)


def _frame_to_arrays(frame) -> list[np.ndarray]:
    """sktime's nested frame (one pd.Series per cell) -> list of ``(T_i, C)`` arrays; shorter dims are NaN-padded."""
    series = []
    for row in frame.itertuples(index=False):
        columns = [cell.to_numpy(dtype=np.float64) for cell in row]
        length = max(len(c) for c in columns)
        array = np.full((length, len(columns)), np.nan)
        for j, column in enumerate(columns):
            array[: len(column), j] = column
        series.append(array)
    return series


def locate_data_error(path: str | os.PathLike, header: TsHeader) -> TsFileError | None:
    """Scan the data lines of a file whose header parsed and return the first problem found (or None).

    Checks, per line: the number of ``:``-separated dimensions, that each value is a number or ``?``, and that
    the class label is declared in the header.
    """
    path = Path(path)
    expected_dims = header.dimensions
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if number <= header.data_line or not line or line.startswith("#"):
                continue
            fields = line.split(":")
            label, dims = fields[-1].strip(), fields[:-1]
            if not dims:
                return TsFileError(path, number, f"expected '<dim 1>:...:<dim C>:<label>', got {line[:60]!r}")
            if expected_dims is None:
                expected_dims = len(dims)
            if len(dims) != expected_dims:
                return TsFileError(
                    path, number, f"expected {expected_dims} dimensions separated by ':', got {len(dims)} (ragged dimensions)"
                )
            for d, field in enumerate([] if header.timestamps else dims, start=1):
                for value in field.split(","):
                    if not _is_value(value.strip()):
                        return TsFileError(
                            path, number, f"dimension {d}: expected a number or '?' for a missing value, got {value.strip()!r}"
                        )
            if header.class_labels is not None and label not in header.class_labels:
                return TsFileError(
                    path, number, f"class label {label!r} is not declared in @classLabel {' '.join(header.class_labels)}"
                )
    return None


def _is_value(text: str) -> bool:
    if text == "?" or text.lower() == "nan":
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True
