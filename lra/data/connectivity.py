"""Independent label check of Pathfinder images (Linsley et al., NeurIPS 2018; LRA's Pathfinder task).

The check sees only pixels: the two markers are the connected blobs of pixels at the marker value; the contour
paddles are separated by at most one background pixel along a path and by at least three from any other
path, so one 3 x 3 dilation of the foreground joins each path and nothing else. The label is 1 exactly when
both markers fall in the same dilated component.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

EIGHT_NEIGHBOURS = np.ones((3, 3), dtype=bool)


def connectivity_label(image: np.ndarray, marker_value: int = 255) -> int:
    """1 if the two markers of a ``(H, W)`` uint8 image are joined by a contour, else 0.

    Raises:
        ValueError: unless the image holds exactly two marker blobs.
    """
    if image.ndim != 2:
        raise ValueError(f"expected a (H, W) grey image, got shape {image.shape}")
    marker_blobs, count = ndimage.label(image == marker_value, structure=EIGHT_NEIGHBOURS)
    if count != 2:
        raise ValueError(f"a Pathfinder image has exactly two markers (value {marker_value}), found {count} blobs")
    joined = ndimage.binary_dilation(image > 0, structure=EIGHT_NEIGHBOURS)
    components, _ = ndimage.label(joined, structure=EIGHT_NEIGHBOURS)
    first = components[marker_blobs == 1][0]
    second = components[marker_blobs == 2][0]
    return int(first == second)
