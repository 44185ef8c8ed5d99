"""The synthetic long-sequence tasks of PSF-Attn (Khalitov, Yu, Cheng, Yang, "Sparse factorization of square
matrices with application to neural attention modeling", Neural Networks 152, 2022), with the rules of its
``SyntheticExperiments/synth_data_generation.py``, at any length N in 2^7 .. 2^14.

- Adding: values x ~ U(-1, 1] (``1 - 2 u``); two distinct sorted positions p1 < p2 are marked; the input per step
  is [value, marker]; the target is ``0.5 + (x[p1] + x[p2]) / 4`` in [0, 1]; MSE loss, and a prediction within
  0.04 of the target counts as correct.
- Temporal Order: tokens a, b, c, d = 0..3 drawn uniformly; two distinct sorted positions are overwritten with
  X = 4 or Y = 5, each chosen uniformly; the label is the order of appearance, XX = 0, XY = 1, YX = 2, YY = 3.
  Vocabulary 6; here token ids are shifted by one (1..6) so that 0 stays padding.

The generators are vectorised; :func:`adding_target_from_input` and :func:`temporal_order_label_from_tokens`
recompute labels from the model input alone, by scanning, to prove them.
"""

from __future__ import annotations

import numpy as np

MIN_LOG2, MAX_LOG2 = 7, 14
CURRICULUM_MIN_LOG2 = 4  # shorter Adding sequences serve only as the first stages of a length curriculum
ADDING_TOLERANCE = 0.04
ORDER_X, ORDER_Y = 4, 5
ORDER_VOCAB = 6
TOKEN_OFFSET = 1


def check_length(length: int, min_log2: int = MIN_LOG2) -> None:
    """Raise ValueError unless ``length`` is a power of two in 2^min_log2 .. 2^14 (PSF's sizes: 2^7..2^14)."""
    if length < 2**min_log2 or length > 2**MAX_LOG2 or length & (length - 1):
        raise ValueError(
            f"sequence length must be a power of two from {2**min_log2} to {2**MAX_LOG2} (PSF's 2^7..2^14), got {length}"
        )


def two_sorted_positions(rng: np.random.Generator, count: int, length: int) -> np.ndarray:
    """``(count, 2)`` distinct positions per row, sorted, drawn uniformly without replacement."""
    first = rng.integers(0, length, size=count)
    second = rng.integers(0, length - 1, size=count)
    second = second + (second >= first)  # uniform over the other length - 1 positions
    return np.sort(np.stack([first, second], axis=1), axis=1).astype(np.int32)


def generate_adding(count: int, length: int, seed: int = 0, min_log2: int = MIN_LOG2) -> dict[str, np.ndarray]:
    """Adding problem: ``values (M, N)`` float32, ``positions (M, 2)``, ``targets (M,)`` float32.

    ``min_log2`` lowers the shortest allowed length (down to ``CURRICULUM_MIN_LOG2``) for curriculum stages.
    """
    check_length(length, max(min_log2, CURRICULUM_MIN_LOG2))
    rng = np.random.default_rng(seed)
    values = (1.0 - 2.0 * rng.random((count, length))).astype(np.float32)
    positions = two_sorted_positions(rng, count, length)
    picked = np.take_along_axis(values, positions.astype(np.int64), axis=1).astype(np.float64)
    targets = (0.5 + picked.sum(axis=1) / 4.0).astype(np.float32)
    return {"values": values, "positions": positions, "targets": targets}


def generate_temporal_order(count: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Temporal Order: ``input_ids (M, N)`` (ids 1..6), ``lengths`` (all N), ``labels (M,)`` in 0..3."""
    check_length(length)
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 4, size=(count, length))
    positions = two_sorted_positions(rng, count, length).astype(np.int64)
    symbols = rng.integers(0, 2, size=(count, 2))  # 0 = X, 1 = Y for the first and second marked position
    np.put_along_axis(tokens, positions, ORDER_X + symbols, axis=1)
    labels = 2 * symbols[:, 0] + symbols[:, 1]
    return {
        "input_ids": (tokens + TOKEN_OFFSET).astype(np.int8),
        "lengths": np.full(count, length, dtype=np.int32),
        "labels": labels.astype(np.int64),
    }


def adding_target_from_input(inputs: np.ndarray) -> float:
    """Target of one Adding input ``(N, 2)`` [value, marker], found by scanning for the two markers.

    Raises:
        ValueError: unless exactly two steps are marked.
    """
    total, marked = 0.0, 0
    for value, marker in inputs:
        if marker == 1.0:
            total += float(value)
            marked += 1
        elif marker != 0.0:
            raise ValueError(f"Adding markers are 0 or 1, got {marker}")
    if marked != 2:
        raise ValueError(f"an Adding input has exactly two marked steps, found {marked}")
    return 0.5 + total / 4.0


def temporal_order_label_from_tokens(ids: np.ndarray) -> int:
    """Label of one Temporal Order sequence (ids 1..6), by the order in which X and Y appear.

    Raises:
        ValueError: unless exactly two symbols are X or Y.
    """
    seen = []
    for token in ids:
        symbol = int(token) - TOKEN_OFFSET
        if symbol in (ORDER_X, ORDER_Y):
            seen.append("X" if symbol == ORDER_X else "Y")
        elif not 0 <= symbol < ORDER_X:
            raise ValueError(f"Temporal Order ids are 1..{ORDER_VOCAB}, got {int(token)}")
    if len(seen) != 2:
        raise ValueError(f"a Temporal Order sequence has exactly two X/Y symbols, found {len(seen)}")
    return {"XX": 0, "XY": 1, "YX": 2, "YY": 3}["".join(seen)]
