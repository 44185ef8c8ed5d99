"""Pathfinder-style images (Linsley et al., NeurIPS 2018) with LRA's 32 x 32 parameters (Tay et al., ICLR 2021).

Each image holds two target contours grown from seeds ``seed_distance`` apart, ``20 // distractor_length``
distractor contours of ``contour_length // 3`` paddles, and two markers: at the origin tip of one target and at
the terminal tip of the same target (label 1) or of the other one (label 0). A contour is a chain of short
straight paddles (``paddle_length`` pixels) separated by ``margin`` background pixels; each turn is drawn with
probability proportional to ``cos^2(min(continuity * turn, pi / 2))``, so larger ``continuity`` gives straighter
contours.

This is a simplified re-implementation of the snakes generator on the pixel grid: paddles are rasterised
without anti-aliasing, and two different contours always stay at least ``separation`` pixels apart (Chebyshev
distance), which makes the label decidable from pixels alone (:mod:`lra.data.connectivity`).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

MARKER_VALUE = 255
TURNS = np.deg2rad(np.arange(-90, 91, 10))
GAPS = (1.0, 0.75, 1.25, 1.5, 0.5)  # sub-pixel offsets tried until the rasterised gap is exactly `margin`


@dataclass(frozen=True)
class PathfinderParams:
    """Generator parameters; the defaults are LRA's ``pathfinder32/curv_contour_length_14`` ("hard")."""

    size: int = 32
    contour_length: int = 14
    paddle_length: int = 2
    margin: int = 1
    continuity: float = 1.0
    seed_distance: int = 7
    padding: int = 1
    separation: int = 4
    marker_radius: int = 1
    max_snake_tries: int = 10
    max_image_tries: int = 200

    @property
    def distractor_length(self) -> int:
        return max(1, self.contour_length // 3)

    @property
    def num_distractors(self) -> int:
        return 20 // self.distractor_length


def _paddle_pixels(start: np.ndarray, angle: float, length: int) -> list[tuple[int, int]]:
    """Pixels (row, col) of a straight paddle covering ``length`` pixels from ``start`` along ``angle``."""
    t = np.arange(0.0, length - 1 + 1e-9, 0.25)
    rows = np.rint(start[0] + t * math.sin(angle)).astype(int)
    cols = np.rint(start[1] + t * math.cos(angle)).astype(int)
    keep = np.ones(len(t), dtype=bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    return list(zip(rows[keep].tolist(), cols[keep].tolist()))


class _Canvas:
    """Occupancy of placed contours (with their marker zones) and the pixels a new contour may not touch."""

    def __init__(self, params: PathfinderParams) -> None:
        self.params = params
        self.occupied = np.zeros((params.size, params.size), dtype=bool)

    def forbidden(self) -> np.ndarray:
        reach = self.params.separation - 1
        if not self.occupied.any():
            return self.occupied.copy()
        return ndimage.binary_dilation(self.occupied, structure=np.ones((2 * reach + 1, 2 * reach + 1), dtype=bool))

    def inside(self, pixels: list[tuple[int, int]], border: int) -> bool:
        low, high = border, self.params.size - 1 - border
        return all(low <= r <= high and low <= c <= high for r, c in pixels)


def _marker_zone(tip: tuple[int, int], radius: int) -> list[tuple[int, int]]:
    return [(tip[0] + dr, tip[1] + dc) for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1)]


def _grow_contour(
    rng: np.random.Generator, canvas: _Canvas, seed: np.ndarray, paddles: int
) -> list[list[tuple[int, int]]] | None:
    """A contour of ``paddles`` paddles from ``seed`` avoiding the canvas, or None if it gets stuck."""
    p = canvas.params
    forbidden = canvas.forbidden()
    border = p.padding + p.marker_radius
    angle = float(np.deg2rad(rng.integers(0, 360)))
    first = _paddle_pixels(seed, angle, p.paddle_length)
    if not canvas.inside(first, border) or any(forbidden[r, c] for r, c in first):
        return None
    chain = [first]
    near_self = np.zeros_like(forbidden)  # within margin + 1 of the contour's paddles before the last one
    end = seed + (p.paddle_length - 1) * np.array([math.sin(angle), math.cos(angle)])
    for _ in range(paddles - 1):
        choice = _next_paddle(rng, end, angle, chain[-1], forbidden | near_self, p)
        if choice is None:
            return None
        angle, start, pixels = choice
        end = start + (p.paddle_length - 1) * np.array([math.sin(angle), math.cos(angle)])
        _stamp(near_self, chain[-1], p.margin + 1)
        chain.append(pixels)
    tips = [chain[0][0], chain[-1][-1]]
    if max(abs(tips[0][0] - tips[1][0]), abs(tips[0][1] - tips[1][1])) < 2 * p.marker_radius + 3:
        return None  # the two marker blobs of one contour must stay apart
    if not canvas.inside(tips, border):
        return None
    zones = [px for tip in tips for px in _marker_zone(tip, p.marker_radius)]
    if any(forbidden[r, c] for r, c in zones):
        return None
    return chain


def _next_paddle(
    rng: np.random.Generator,
    end: np.ndarray,
    angle: float,
    last: list[tuple[int, int]],
    blocked: np.ndarray,
    p: PathfinderParams,
) -> tuple[float, np.ndarray, list[tuple[int, int]]] | None:
    """Draw the next paddle after one ending at ``end`` with orientation ``angle``, or None if none fits.

    Every turn in ``TURNS`` is tried with the sub-pixel gaps of ``GAPS`` (the first whose rasterised gap to
    the last paddle is exactly ``margin`` pixels wins); turns landing outside the image or on ``blocked`` pixels
    are dropped and one of the rest is drawn with probability ``cos^2(min(continuity * turn, pi / 2))``.
    """
    angles = angle + TURNS  # (T,)
    direction = np.stack([np.sin(angles), np.cos(angles)], axis=-1)[:, None, :]  # (T, 1, 2)
    starts = end + (p.margin + np.asarray(GAPS))[None, :, None] * direction  # (T, G, 2)
    t = np.arange(0.0, p.paddle_length - 1 + 1e-9, 0.25)
    points = np.rint(starts[:, :, None, :] + t[None, None, :, None] * direction[:, :, None, :]).astype(int)  # (T, G, P, 2)
    gap = np.abs(points[..., None, :] - np.asarray(last)).max(axis=-1).min(axis=(-1, -2))  # (T, G) Chebyshev
    exact = gap == p.margin + 1
    first_gap = exact.argmax(axis=1)
    turns = np.arange(len(TURNS))
    chosen = points[turns, first_gap]  # (T, P, 2)
    size = blocked.shape[0]
    inside = ((chosen >= p.padding) & (chosen <= size - 1 - p.padding)).all(axis=(-1, -2))
    clipped = np.clip(chosen, 0, size - 1)
    hit = blocked[clipped[..., 0], clipped[..., 1]].any(axis=-1)
    weights = np.cos(np.minimum(p.continuity * np.abs(TURNS), math.pi / 2)) ** 2
    weights = np.where(exact.any(axis=1) & inside & ~hit & (weights > 1e-12), weights, 0.0)
    if weights.sum() <= 0:
        return None
    k = int(rng.choice(len(TURNS), p=weights / weights.sum()))
    pixels: list[tuple[int, int]] = []
    for r, c in chosen[k].tolist():
        if not pixels or pixels[-1] != (r, c):
            pixels.append((r, c))
    return float(angles[k]), starts[k, first_gap[k]], pixels


def _stamp(grid: np.ndarray, pixels: list[tuple[int, int]], reach: int) -> None:
    for r, c in pixels:
        grid[max(r - reach, 0) : r + reach + 1, max(c - reach, 0) : c + reach + 1] = True


def _place(canvas: _Canvas, chain: list[list[tuple[int, int]]]) -> None:
    p = canvas.params
    for r, c in [px for paddle in chain for px in paddle]:
        canvas.occupied[r, c] = True
    for tip in (chain[0][0], chain[-1][-1]):
        for r, c in _marker_zone(tip, p.marker_radius):
            canvas.occupied[r, c] = True


def _random_seed(rng: np.random.Generator, params: PathfinderParams, low: int) -> np.ndarray:
    return rng.integers(low, params.size - low, size=2).astype(float)


def _two_targets(rng: np.random.Generator, params: PathfinderParams) -> tuple[_Canvas, list] | None:
    canvas = _Canvas(params)
    seed_a = _random_seed(rng, params, params.padding + params.marker_radius + 2)
    heading = rng.uniform(0, 2 * math.pi)
    seed_b = np.round(seed_a + params.seed_distance * np.array([math.sin(heading), math.cos(heading)]))
    reserved = [(int(seed_b[0]) + dr, int(seed_b[1]) + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    if not canvas.inside(reserved, params.padding):
        return None
    for r, c in reserved:  # keep the first contour off the second seed
        canvas.occupied[r, c] = True
    chain_a = _grow_contour(rng, canvas, seed_a, params.contour_length)
    canvas.occupied[:] = False
    if chain_a is None:
        return None
    _place(canvas, chain_a)
    chain_b = _grow_contour(rng, canvas, seed_b, params.contour_length)
    if chain_b is None:
        return None
    _place(canvas, chain_b)
    return canvas, [chain_a, chain_b]


def generate_image(rng: np.random.Generator, params: PathfinderParams = PathfinderParams()) -> tuple[np.ndarray, int]:
    """One ``(size, size)`` uint8 image and its label (1 = the markers lie on one contour).

    Raises:
        RuntimeError: if no valid layout was found in ``max_image_tries`` attempts (parameters too crowded).
    """
    label = int(rng.integers(0, 2))
    for _ in range(params.max_image_tries):
        placed = _two_targets(rng, params)
        if placed is not None:
            break
    else:
        raise RuntimeError(
            f"could not place two contours of {params.contour_length} paddles in {params.size}x{params.size} after "
            f"{params.max_image_tries} tries; lower --contour-length or --separation"
        )
    canvas, targets = placed
    distractors = []
    for _ in range(params.num_distractors):
        if canvas.forbidden().mean() > 0.99:
            break
        for _ in range(params.max_snake_tries):
            chain = _grow_contour(rng, canvas, _random_seed(rng, params, params.padding), params.distractor_length)
            if chain is not None:
                _place(canvas, chain)
                distractors.append(chain)
                break
    image = np.zeros((params.size, params.size), dtype=np.uint8)
    intensity = int(rng.integers(128, 224))
    for chain in targets + distractors:
        for r, c in [px for paddle in chain for px in paddle]:
            image[r, c] = intensity
    first = int(rng.integers(0, 2))
    second = first if label == 1 else 1 - first
    for tip in (targets[first][0][0], targets[second][-1][-1]):
        for r, c in _marker_zone(tip, params.marker_radius):
            image[r, c] = MARKER_VALUE
    return image, label


def write_release(
    out: str | Path,
    count: int,
    seed: int = 0,
    params: PathfinderParams = PathfinderParams(),
    batch_size: int = 1000,
    progress=None,
) -> Path:
    """Write ``count`` images in the ``lra_release/pathfinder32/<difficulty>`` layout.

    PNGs go to ``out/imgs/<batch>/sample_<k>.png`` and one text metadata file per batch to
    ``out/metadata/<batch>.npy`` with rows ``imgs/<batch> sample_<k>.png <k> <label> <continuity>
    <contour_length> <distractor_length> <paddle_length> <paddle_thickness> <margin> <n_contrasts>``.
    """
    out = Path(out)
    rng = np.random.default_rng(seed)
    (out / "metadata").mkdir(parents=True, exist_ok=True)
    for batch in range(math.ceil(count / batch_size)):
        folder = out / "imgs" / str(batch)
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for k in range(batch * batch_size, min(count, (batch + 1) * batch_size)):
            image, label = generate_image(rng, params)
            Image.fromarray(image, mode="L").save(folder / f"sample_{k}.png")
            rows.append(
                f"imgs/{batch} sample_{k}.png {k} {label} {params.continuity} {params.contour_length} "
                f"{params.distractor_length} {params.paddle_length} 1 {params.margin} 1"
            )
            if progress is not None:
                progress.update(1)
        (out / "metadata" / f"{batch}.npy").write_text("\n".join(rows) + "\n")
    (out / "generator.json").write_text(json.dumps({"seed": seed, "count": count, **asdict(params)}, indent=2))
    return out
