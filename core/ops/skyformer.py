"""Skyformer: Nystrom approximation of Gaussian-kernel attention (Chen et al., NeurIPS 2021, "Skyformer:
Remodel Self-Attention with Gaussian Kernel and Nystrom Method").

The kernel block ``C = kappa(Q', K')`` is not PSD, so Skyformer lifts it into the PSD matrix
``B = kappa(X, X)`` of ``X = [Q'; K']`` (2N rows), approximates ``B ~ B S (S^T B S + gamma I)^{-1} S^T B`` with
``S`` selecting m landmark rows of ``X`` (half among the queries, half among the keys), and reads off the
off-diagonal block: ``C ~ kappa(Q', X_S) (kappa(X_S, X_S) + gamma I)^{-1} kappa(X_S, K')``. The output is
``C V`` computed right to left in O(N m d + m^3) time; the two N-sized factors are recomputed chunk by chunk
in the backward (:mod:`core.ops.kernel_product`), so the memory is O(N d + m^2).

:func:`packed_skyformer_attention` computes the same from the packed ``[Q, K, V]`` projections in one autograd
function: each kernel chunk is a single product of rows lifted by two columns and one in-place exp, no per-head
copy of Q, K or V is made, the output comes out with its heads merged and the backward writes the gradient of
the packed projections directly. :func:`skyformer_attention` is its reference.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable

from core.ops.gaussian import feature_scale, gaussian_kernel
from core.ops.kernel_product import gaussian_kernel_product
from core.ops.pinv import regularized_kernel_inverse
from core.ops.sampling import gather_positions


def skyformer_landmarks(
    q: torch.Tensor, k: torch.Tensor, query_positions: torch.Tensor, key_positions: torch.Tensor
) -> torch.Tensor:
    """Landmark rows ``X_S``: queries then keys at the given positions.

    Args:
        q (torch.Tensor): ``[B, H, N, D]``.
        k (torch.Tensor): ``[B, H, N, D]``.
        query_positions (torch.Tensor): int64 ``[B, m_q]``.
        key_positions (torch.Tensor): int64 ``[B, m_k]``.

    Returns:
        torch.Tensor: ``[B, H, m_q + m_k, D]`` (unscaled).
    """
    return torch.cat([gather_positions(q, query_positions), gather_positions(k, key_positions)], dim=2)


def landmark_kernel_inverse(
    landmarks: torch.Tensor, scale: float, ridge: float, iterations: int, inverse: str, dtype: torch.dtype
) -> torch.Tensor:
    """``(kappa(X_S', X_S') + gamma I)^{-1}`` of shape ``[B, H, m, m]``, computed in at least float32.

    Args:
        landmarks (torch.Tensor): unscaled landmark rows ``[B, H, m, D]``.
        scale (float): feature scale ``s``.
        ridge (float): ``gamma``.
        iterations (int): Newton-Schulz iterations.
        inverse (str): ``"newton_schulz"`` or ``"solve"``.
        dtype (torch.dtype): dtype of the result.
    """
    # The m x m inverse runs in at least float32 (half precision would break the iteration).
    work = torch.promote_types(landmarks.dtype, torch.float32)
    kernel = gaussian_kernel(landmarks.to(work), landmarks.to(work), scale)  # [B, H, m, m]
    return regularized_kernel_inverse(kernel, ridge, iterations, inverse).to(dtype)


def skyformer_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    landmarks: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    ridge: float = 0.1,
    iterations: int = 6,
    inverse: str = "newton_schulz",
) -> torch.Tensor:
    """Nystrom approximation of ``kappa(Q', K') V`` on the lifted kernel matrix.

    Args:
        q (torch.Tensor): queries ``[B, H, N, D]``.
        k (torch.Tensor): keys ``[B, H, N, D]``.
        v (torch.Tensor): values ``[B, H, N, Dv]``.
        landmarks (torch.Tensor): unscaled landmark rows ``[B, H, m, D]`` (see :func:`skyformer_landmarks`).
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token; padded keys get weight 0.
        scale (float, optional): feature scale, default ``D^{-1/4}``.
        ridge (float): ``gamma`` added to the landmark kernel matrix.
        iterations (int): Newton-Schulz iterations (``inverse="newton_schulz"``).
        inverse (str): ``"newton_schulz"`` (Skyformer) or ``"solve"`` (direct, exact).

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    scale = feature_scale(q.shape[-1], scale)
    inverse_kernel = landmark_kernel_inverse(landmarks, scale, ridge, iterations, inverse, v.dtype)
    # Both N-sized products are recomputed chunk by chunk in the backward: no [N, m] kernel is stored.
    context = gaussian_kernel_product(landmarks, k, v, scale, key_padding_mask)  # kappa(S', K') V: [B, H, m, Dv]
    context = torch.matmul(inverse_kernel, context)
    return gaussian_kernel_product(q, landmarks, context, scale)  # kappa(Q', S') context: [B, H, N, Dv]


def skyformer_attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    landmarks: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    ridge: float = 0.1,
    iterations: int = 6,
    inverse: str = "newton_schulz",
) -> torch.Tensor:
    """The explicit ``[B, H, N, N]`` matrix Skyformer applies to the values (zero at padded keys)."""
    scale = feature_scale(q.shape[-1], scale)
    inverse_kernel = regularized_kernel_inverse(gaussian_kernel(landmarks, landmarks, scale), ridge, iterations, inverse)
    weights = gaussian_kernel(q, landmarks, scale) @ inverse_kernel @ gaussian_kernel(k, landmarks, scale).transpose(-1, -2)
    if key_padding_mask is not None:
        weights = weights * key_padding_mask[:, None, None, :].to(weights.dtype)
    return weights


def reference_skyformer_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    ridge: float = 0.1,
) -> torch.Tensor:
    """A direct transcription of the paper: the lifted 2N x 2N matrix, a selection matrix, an exact inverse.

    ``B = kappa(X, X)``, ``X = [Q'; K']``; ``B~ = B S (S^T B S + gamma I)^{-1} S^T B`` with ``S`` the 0/1
    selection of rows ``query_positions`` and ``N + key_positions``; the output is ``B~[:N, N:] V`` with padded
    keys zeroed. O(N^2) memory: a test reference only.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]``.
    """
    n = q.shape[-2]
    scale = feature_scale(q.shape[-1], scale)
    x = torch.cat([q, k], dim=2) * scale  # [B, H, 2N, D]
    lifted = torch.exp(-0.5 * torch.cdist(x, x).pow(2))  # [B, H, 2N, 2N]
    rows = torch.cat([query_positions, key_positions + n], dim=1)  # [B, m]
    selection = torch.nn.functional.one_hot(rows, 2 * n).to(x.dtype).transpose(1, 2)[:, None]  # [B, 1, 2N, m]
    core = selection.transpose(-1, -2) @ lifted @ selection
    core = core + ridge * torch.eye(core.shape[-1], dtype=x.dtype, device=x.device)
    approx = lifted @ selection @ torch.linalg.inv(core) @ selection.transpose(-1, -2) @ lifted
    block = approx[..., :n, n:]
    if key_padding_mask is not None:
        block = block * key_padding_mask[:, None, None, :].to(block.dtype)
    return block @ v


# Elements of one [H, rows, m] kernel chunk (16 MiB in float32).
_CHUNK_ELEMENTS = 1 << 22
# Subtracted from a padded key's logit; exp() of it is exactly 0 in every floating dtype.
_PAD_LOGIT = 1.0e4


def _lifted_landmarks(landmarks: torch.Tensor, s2: float) -> torch.Tensor:
    """``[s^2 y, 1, -s^2 |y|^2 / 2]`` of shape ``[B, H, m, D + 2]``: the short side of :func:`_kernel_rows`."""
    half_norm = torch.linalg.vector_norm(landmarks, dim=-1, keepdim=True).square_().mul_(-0.5 * s2)
    return torch.cat([landmarks * s2, torch.ones_like(half_norm), half_norm], dim=-1)


def _row_offsets(rows: torch.Tensor, s2: float, pad: torch.Tensor | None) -> torch.Tensor:
    """``-s^2 |x|^2 / 2 - pad`` of every row, ``[B, H, N]``: the middle column of the lifted rows.

    Args:
        rows (torch.Tensor): ``[B, H, N, D]``, any strides.
        s2 (float): ``s^2``.
        pad (torch.Tensor, optional): ``[B, N]`` from :func:`_pad_logits`.
    """
    # a norm reduction reads each row once, without an [N, D] squared temporary
    offsets = torch.linalg.vector_norm(rows, dim=-1).square_().mul_(-0.5 * s2)
    return offsets if pad is None else offsets.sub_(pad[:, None, :])


def _lift_rows(buffer: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Write ``[x, offset, 1]`` into ``buffer`` ``[H, c, D + 2]`` in one op; ``rows`` ``[H, c, D]``, ``offsets`` ``[H, c]``."""
    ones = offsets.new_ones(()).expand(*offsets.shape, 1)
    return torch.cat([rows, offsets[..., None], ones], dim=-1, out=buffer)


def _kernel_rows(lifted_rows: torch.Tensor, lifted_landmarks: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``kappa(s x_i, s y_j) = exp([x_i, -h_i, 1] . [s^2 y_j, 1, -h_j])``: one product and an in-place exp.

    Args:
        lifted_rows (torch.Tensor): ``[H, c, D + 2]`` from :func:`_lift_rows`.
        lifted_landmarks (torch.Tensor): ``[H, m, D + 2]`` from :func:`_lifted_landmarks`.
        out (torch.Tensor): ``[H, c, m]``, overwritten and returned.
    """
    return torch.bmm(lifted_rows, lifted_landmarks.transpose(-1, -2), out=out).exp_()


class _Chunk(NamedTuple):
    """One row chunk of a pass; every tensor but ``x`` is a contiguous buffer overwritten by the next chunk."""

    b: int  # sequence
    part: slice  # rows
    x: torch.Tensor  # the rows [H, c, D], a strided view of the projections
    lifted: torch.Tensor  # [H, c, D + 2], see _lift_rows
    kernel: torch.Tensor  # kappa(s x, s y) [H, c, m]
    spare: torch.Tensor  # free [H, c, m]
    inputs: torch.Tensor  # free [H, c, D], see dense
    outputs: torch.Tensor  # free [H, c, D]

    def dense(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` ``[H, c, D]`` copied into ``inputs``: batched products on contiguous operands run as one call."""
        return self.inputs.copy_(rows)


class _ChunkBuffers:
    """Row chunks of one pass and the flat buffers every chunk reuses, viewed contiguously for any chunk length."""

    def __init__(self, rows: torch.Tensor, landmarks: int):
        _, h, n, d = rows.shape
        step = max(1, min(n, _CHUNK_ELEMENTS // (h * landmarks)))
        self.slices = [slice(i, min(i + step, n)) for i in range(0, n, step)]
        self.heads, self.width, self.landmarks = h, d, landmarks
        self.lifted = rows.new_empty(h * step * (d + 2))
        self.kernel, self.spare = (rows.new_empty(h * step * landmarks) for _ in range(2))
        self.inputs, self.outputs = (rows.new_empty(h * step * d) for _ in range(2))

    def _view(self, flat: torch.Tensor, rows: int, width: int) -> torch.Tensor:
        return flat[: self.heads * rows * width].view(self.heads, rows, width)

    def kernel_chunks(self, rows: torch.Tensor, offsets: torch.Tensor, lifted_landmarks: torch.Tensor):
        """Yield a :class:`_Chunk` for every sequence and row chunk of ``rows`` ``[B, H, N, D]``.

        Args:
            rows (torch.Tensor): ``[B, H, N, D]``, any strides.
            offsets (torch.Tensor): ``[B, H, N]`` from :func:`_row_offsets`.
            lifted_landmarks (torch.Tensor): ``[B, H, m, D + 2]`` from :func:`_lifted_landmarks`.
        """
        d, m = self.width, self.landmarks
        for b in range(rows.shape[0]):
            for part in self.slices:
                count = part.stop - part.start
                x = rows[b, :, part]
                lifted = _lift_rows(self._view(self.lifted, count, d + 2), x, offsets[b, :, part])
                kernel = _kernel_rows(lifted, lifted_landmarks[b], self._view(self.kernel, count, m))
                yield _Chunk(
                    b,
                    part,
                    x,
                    lifted,
                    kernel,
                    self._view(self.spare, count, m),
                    self._view(self.inputs, count, d),
                    self._view(self.outputs, count, d),
                )


def _row_gradients(
    d_kernel: torch.Tensor,
    rows: torch.Tensor,
    landmarks: torch.Tensor,
    lifted_rows: torch.Tensor,
    grad_rows: torch.Tensor,
    lifted_grad: torch.Tensor,
) -> None:
    """Gradients of ``t_ij = s^2 (x_i.y_j - |x_i|^2/2 - |y_j|^2/2)`` given ``d_kernel = s^2 dL/dt``.

    Writes ``dT Y - rowsum(dT) X`` into ``grad_rows`` and adds ``dT^T [X, -h, 1]`` to ``lifted_grad``, whose
    first ``D`` columns and last column become ``dT^T X`` and ``colsum(dT)`` (see :func:`_landmark_gradient`).

    Args:
        d_kernel (torch.Tensor): ``[H, c, m]``.
        rows (torch.Tensor): ``X``, ``[H, c, D]``.
        landmarks (torch.Tensor): ``Y``, ``[H, m, D]``.
        lifted_rows (torch.Tensor): ``[H, c, D + 2]`` from :func:`_lift_rows`.
        grad_rows (torch.Tensor): ``[H, c, D]``; overwritten.
        lifted_grad (torch.Tensor): ``[H, m, D + 2]``; accumulated.
    """
    torch.bmm(d_kernel, landmarks, out=grad_rows)
    grad_rows.addcmul_(d_kernel.sum(dim=-1, keepdim=True), rows, value=-1)
    lifted_grad.baddbmm_(d_kernel.transpose(-1, -2), lifted_rows)


def _landmark_gradient(lifted_grad: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """``dT^T X - colsum(dT) Y`` from the accumulated ``lifted_grad`` ``[B, H, m, D + 2]``; ``[B, H, m, D]``."""
    d = landmarks.shape[-1]
    return lifted_grad[..., :d] - lifted_grad[..., d + 1 :] * landmarks


def _pad_logits(key_padding_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """``_PAD_LOGIT`` at padded keys and 0 at real ones, ``[B, N]`` (None without a mask)."""
    if key_padding_mask is None:
        return None
    return (~key_padding_mask).to(dtype) * _PAD_LOGIT


class _LandmarkInverse:
    """``(kappa(X_S', X_S') + gamma I)^{-1}`` with its (m-sized) autograd graph kept for one backward.

    Args:
        landmarks (torch.Tensor): unscaled landmark rows ``[B, H, m, D]``.
        options (tuple): ``(scale, ridge, iterations, inverse)`` of :func:`landmark_kernel_inverse`.
        record (bool): keep the graph (the backward then needs no second pass of the iteration).
    """

    def __init__(self, landmarks: torch.Tensor, options: tuple, record: bool):
        self.options = options
        self.leaf = landmarks.detach().requires_grad_(record)
        with torch.enable_grad():
            self.graph = landmark_kernel_inverse(self.leaf, *options, landmarks.dtype)
        self.value = self.graph.detach()  # [B, H, m, m]

    def landmark_gradient(self, grad_inverse: torch.Tensor) -> torch.Tensor:
        """The landmarks' gradient ``[B, H, m, D]`` from the inverse's ``[B, H, m, m]``; a repeated call recomputes."""
        if self.graph is None or not self.graph.requires_grad:
            with torch.enable_grad():
                self.leaf = self.leaf.detach().requires_grad_(True)
                self.graph = landmark_kernel_inverse(self.leaf, *self.options, self.leaf.dtype)
        (grad,) = torch.autograd.grad(self.graph, self.leaf, grad_inverse)
        self.graph = None  # autograd.grad freed it
        return grad


def _scatter_landmark_gradient(grad_qkv, grad_landmarks, query_positions, key_positions) -> None:
    """Add the landmark rows' gradients ``[B, H, m, D]`` to the query and key rows of ``grad_qkv`` ``[B, N, 3, H, D]``."""
    b, n = grad_qkv.shape[:2]
    offsets = torch.arange(b, device=grad_qkv.device)[:, None] * n
    m_q = query_positions.shape[1]
    for i, (positions, grad) in enumerate(
        [(query_positions, grad_landmarks[:, :, :m_q]), (key_positions, grad_landmarks[:, :, m_q:])]
    ):
        rows = grad_qkv[:, :, i].view(b * n, *grad_qkv.shape[3:])  # [B * N, H, D]
        rows.index_add_(0, (positions + offsets).flatten(), grad.transpose(1, 2).flatten(0, 1))


def _unpack(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views ``[B, H, N, D]`` of the queries, keys and values in ``[B, N, 3, H, D]``."""
    return tuple(qkv[:, :, i].transpose(1, 2) for i in range(3))


class _PackedSkyformer(torch.autograd.Function):
    """Skyformer from the packed projections ``[B, N, 3, H, D]`` to the merged outputs ``[B, N, H, D]``.

    The forward keeps only the projections and m-sized tensors; the backward recomputes each ``[H, c, m]``
    kernel chunk once and writes the gradient of the packed projections in place, landmark rows included.
    """

    @staticmethod
    def forward(ctx, qkv, query_positions, key_positions, key_padding_mask, scale, ridge, iterations, inverse):
        q, k, v = _unpack(qkv)
        s2 = scale * scale
        landmarks = skyformer_landmarks(q, k, query_positions, key_positions)  # [B, H, m, D]
        landmark_inverse = _LandmarkInverse(landmarks, (scale, ridge, iterations, inverse), ctx.needs_input_grad[0])
        inverse_kernel = landmark_inverse.value
        lifted = _lifted_landmarks(landmarks, s2)
        query_offsets = _row_offsets(q, s2, None)
        key_offsets = _row_offsets(k, s2, _pad_logits(key_padding_mask, qkv.dtype))
        buffers = _ChunkBuffers(q, landmarks.shape[2])
        key_context = v.new_zeros(*landmarks.shape)  # kappa(S', K') V: [B, H, m, D]
        for c in buffers.kernel_chunks(k, key_offsets, lifted):
            key_context[c.b].baddbmm_(c.kernel.transpose(-1, -2), c.dense(v[c.b, :, c.part]))
        context = torch.matmul(inverse_kernel, key_context)
        out = qkv.new_empty(qkv[:, :, 0].shape)  # [B, N, H, D]: the heads come out merged
        for c in buffers.kernel_chunks(q, query_offsets, lifted):
            out[c.b, c.part].transpose(0, 1).copy_(torch.bmm(c.kernel, context[c.b], out=c.outputs))
        ctx.save_for_backward(qkv, query_positions, key_positions, query_offsets, key_offsets, landmarks, key_context, context)
        ctx.scale, ctx.landmark_inverse = scale, landmark_inverse
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        qkv, query_positions, key_positions, query_offsets, key_offsets, landmarks, key_context, context = ctx.saved_tensors
        inverse_kernel = ctx.landmark_inverse.value
        s2 = ctx.scale * ctx.scale
        q, k, v = _unpack(qkv)
        grad_qkv = torch.empty(qkv.shape, dtype=qkv.dtype, device=qkv.device)
        grad_q, grad_k, grad_v = _unpack(grad_qkv)
        grad_out = grad_out.transpose(1, 2)  # [B, H, N, D]
        lifted = _lifted_landmarks(landmarks, s2)
        buffers = _ChunkBuffers(q, landmarks.shape[2])
        # out = kappa(Q', S') context
        lifted_grad = landmarks.new_zeros(*landmarks.shape[:-1], landmarks.shape[-1] + 2)
        grad_context = torch.zeros_like(context)
        scaled_context = (context * s2).transpose(-1, -2)  # [B, H, D, m]
        for c in buffers.kernel_chunks(q, query_offsets, lifted):
            g = c.dense(grad_out[c.b, :, c.part])
            grad_context[c.b].baddbmm_(c.kernel.transpose(-1, -2), g)
            d_kernel = torch.bmm(g, scaled_context[c.b], out=c.spare).mul_(c.kernel)
            _row_gradients(d_kernel, c.x, landmarks[c.b], c.lifted, c.outputs, lifted_grad[c.b])
            grad_q[c.b, :, c.part].copy_(c.outputs)
        grad_landmarks = _landmark_gradient(lifted_grad, landmarks)
        # context = inverse_kernel key_context
        grad_inverse = torch.matmul(grad_context, key_context.transpose(-1, -2))
        grad_key_context = torch.matmul(inverse_kernel.transpose(-1, -2), grad_context)
        grad_landmarks += ctx.landmark_inverse.landmark_gradient(grad_inverse)
        # key_context = kappa(S', K') V
        lifted_grad.zero_()
        scaled_grad = (grad_key_context * s2).transpose(-1, -2)  # [B, H, D, m]
        for c in buffers.kernel_chunks(k, key_offsets, lifted):
            grad_v[c.b, :, c.part].copy_(torch.bmm(c.kernel, grad_key_context[c.b], out=c.outputs))
            d_kernel = torch.bmm(c.dense(v[c.b, :, c.part]), scaled_grad[c.b], out=c.spare).mul_(c.kernel)
            _row_gradients(d_kernel, c.x, landmarks[c.b], c.lifted, c.outputs, lifted_grad[c.b])
            grad_k[c.b, :, c.part].copy_(c.outputs)
        grad_landmarks += _landmark_gradient(lifted_grad, landmarks)
        _scatter_landmark_gradient(grad_qkv, grad_landmarks, query_positions, key_positions)
        return grad_qkv, None, None, None, None, None, None, None


def packed_skyformer_attention(
    qkv: torch.Tensor,
    num_heads: int,
    query_positions: torch.Tensor,
    key_positions: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    scale: float | None = None,
    ridge: float = 0.1,
    iterations: int = 6,
    inverse: str = "newton_schulz",
) -> torch.Tensor:
    """:func:`skyformer_attention` on packed projections, without per-head copies or N x m kernels.

    The landmarks are the query rows at ``query_positions`` and the key rows at ``key_positions`` (as in
    :func:`skyformer_landmarks`). Each Gaussian kernel chunk is one product of lifted rows
    ``[x, -s^2|x|^2/2, 1] . [s^2 y, 1, -s^2|y|^2/2]`` and one in-place exp; padded keys get ``-_PAD_LOGIT``
    added to their logits, so their kernel entries are exactly 0.

    Args:
        qkv (torch.Tensor): ``[B, N, 3 * H * D]``, queries, keys and values side by side (each head-major).
        num_heads (int): H.
        query_positions (torch.Tensor): int64 ``[B, m_q]``.
        key_positions (torch.Tensor): int64 ``[B, m_k]``.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token; padded keys get weight 0.
        scale (float, optional): feature scale, default ``D^{-1/4}``.
        ridge (float): ``gamma`` added to the landmark kernel matrix.
        iterations (int): Newton-Schulz iterations (``inverse="newton_schulz"``).
        inverse (str): ``"newton_schulz"`` (Skyformer) or ``"solve"`` (direct, exact).

    Returns:
        torch.Tensor: ``[B, N, H * D]``, the heads' outputs merged.
    """
    b, n, width = qkv.shape
    if width % (3 * num_heads) != 0:
        raise ValueError(
            f"expected qkv of shape (B, N, 3 * H * D) with H = {num_heads}, got {tuple(qkv.shape)}: "
            f"the last dim must be a multiple of {3 * num_heads}"
        )
    packed = qkv.view(b, n, 3, num_heads, width // (3 * num_heads))
    scale = feature_scale(packed.shape[-1], scale)
    out = _PackedSkyformer.apply(
        packed, query_positions, key_positions, key_padding_mask, float(scale), ridge, iterations, inverse
    )
    return out.view(b, n, -1)
