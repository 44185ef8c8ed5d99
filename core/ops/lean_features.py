"""Memory-lean non-causal positive random-feature attention: features are recomputed in chunks, never stored.

For GERF-family features with one A per head (PosRF, GERF, OPRF), the normalised attention

    out_i = sum_j qf_i . kf_j v_j / (sum_j qf_i . kf_j + eps),   qf_i = exp(e(q_i) - max_r e_r(q_i)),
    kf_j = mask_j exp(e(k_j) - kappa ||k_j||^2 - M),   e(x) = W x + c

(``W = B s omega`` the folded weight rows, ``c_r = A ||omega_r||^2``, ``kappa = s^2 / 2`` for the softmax kernel and
``s^2`` for the Gaussian one, M the largest key exponent over the sequence's real keys) only needs
``S = sum_j kf_j [v_j, 1]^T = [S_v, z]``, an ``[m, Dv + 1]`` matrix per head. Given S it is softmax attention over
the m features,

    out_i = softmax_r(e_r(q_i) + log z'_r) U,   U_r = S_v,r / z'_r,   z' = z + eps,

since ``a_ir = qf_ir z'_r / (qf_i . z')``; eps enters as ``eps sum_r qf_ir`` instead of eps, equally negligible (it
only keeps a sequence without real keys finite, with output 0). The softmax is the per-query-row stabiliser (row
maximum and normaliser, both per-query constants that cancel), and its backward pass needs no separate gradient of
the denominator. M cancels as well, so neither carries a gradient.

Two autograd functions keep ``k, v`` (keys) and ``q`` and S (queries) and rebuild the feature maps chunk by chunk in
the backward pass, instead of keeping two ``[B, H, N, m]`` feature tensors (and their exponentials) alive as plain
autograd would. Splitting them lets autograd free q and the output gradient before the keys' backward pass. Each
key chunk is stabilised by its own maximum and its state rescaled to M once all chunks are read, so the keys are
read once in the forward pass. Per-key and per-feature terms ride inside the matmuls (``[k_j, o_j] [W, 1]^T`` with
``o_j = -kappa ||k_j||^2``, computed from each chunk's copy of the keys in the forward pass and kept, ``[B, H, N, 1]``,
for the backward pass; ``[q_i, 1] [W, b]^T``), heads are the batch of every matmul, and queries, keys and values
may be strided views of token-major ``[B, N, H, d]`` projections: the output is written token-major (merging the
heads is then free) and the gradients come back in the layout of the inputs.

It computes the same function, with the same gradients, as :func:`core.ops.random_features.positive_attention_features`
followed by :func:`core.ops.random_features.random_feature_attention` (tests compare them in float64).
"""

from __future__ import annotations

import torch

from core.ops.linear import accumulation_dtype

DEFAULT_CHUNK = 2048
_FORWARD_ROWS = 2  # the forward pass keeps one [H, C, m] tensor per chunk, the backward pass two: longer chunks


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _of_batch(t: torch.Tensor | None, b: int) -> torch.Tensor | None:
    """Batch element b of a 4-d tensor with a leading batch dim of size B or 1; a 3-d tensor is shared by all."""
    if t is None or t.dim() < 4:
        return t
    return t[b] if t.shape[0] > 1 else t[0]


class _Workspace:
    """Reusable ``[H, rows, cols]`` buffers for the chunks: no allocation (and no page faults) per chunk.

    Args:
        like (torch.Tensor): dtype and device of the buffers.
        heads (int): H.
        rows (int): the largest chunk.
    """

    def __init__(self, like: torch.Tensor, heads: int, rows: int) -> None:
        self.like, self.heads, self.rows = like, heads, rows
        self.buffers: dict[str, torch.Tensor] = {}
        self.ones_rows: dict[str, int] = {}  # per buffer, the chunk length whose ones column is in place

    def get(self, name: str, rows: int, cols: int) -> torch.Tensor:
        """A contiguous ``[H, rows, cols]`` view of buffer ``name`` (contents undefined)."""
        flat = self.buffers.get(name)
        if flat is None or flat.numel() < self.heads * self.rows * cols:
            flat = self.buffers[name] = self.like.new_empty(self.heads * self.rows * cols)
            self.ones_rows.pop(name, None)
        return flat[: self.heads * rows * cols].view(self.heads, rows, cols)

    def joined(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """``[x, 1]``, ``[H, C, w + 1]`` for ``x [H, C, w]`` (the ones column is written once per chunk length)."""
        rows, width = x.shape[-2:]
        out = self.get(name, rows, width + 1)
        if self.ones_rows.get(name) != rows:
            out[..., width] = 1.0
            self.ones_rows[name] = rows
        out[..., :width] = x
        return out


def _joined_keys(k: torch.Tensor, work: _Workspace) -> torch.Tensor:
    """``[k, .]``: the workspace's ``[H, C, d + 1]`` "keys" buffer with ``k [H, C, d]`` copied in (the last column
    is left for the offsets)."""
    joined = work.get("keys", k.shape[1], k.shape[-1] + 1)
    joined[..., :-1] = k
    return joined


def _key_offsets(keys: torch.Tensor, mask: torch.Tensor | None, kappa: float, out: torch.Tensor) -> torch.Tensor:
    """Write ``o_j = -kappa ||k_j||^2`` into ``out [H, C, 1]`` for a chunk of keys ``[H, C, d]`` (read from the
    joined buffer, while in cache), ``-inf`` at padded keys (their features are exactly 0); ``mask [C]``."""
    torch.linalg.vector_norm(keys, dim=-1, keepdim=True, out=out).square_().mul_(-kappa)
    return out if mask is None else out.masked_fill_(~mask[None, :, None], float("-inf"))


def _key_exponent(joined, weight_ones, bias, work, name):
    """``e(k_j) + o_j = [k_j, o_j] [W, 1]^T + c``: ``[H, C, m]`` in buffer ``name``.

    Args:
        joined (torch.Tensor): ``[H, C, d + 1]`` keys and offsets ``[k_j, o_j]``.
        weight_ones (torch.Tensor): ``[H, m, d + 1]`` ``[W, 1]``.
        bias (torch.Tensor, optional): ``[H, 1, m]`` c.
    """
    out = work.get(name, joined.shape[1], weight_ones.shape[1])
    e = torch.bmm(joined, weight_ones.transpose(1, 2), out=out)
    return e if bias is None else e.add_(bias)


def _key_state(k, v, weight_ones, bias, mask, kappa, chunk, work, offsets):
    """``S = sum_j exp(e(k_j) + o_j - M) [v_j, 1]^T`` and M, reading the keys once; writes the offsets ``o_j``.

    Each chunk is stabilised by its own maximum; the chunk states are rescaled to the sequence maximum M at the end.

    Args:
        k (torch.Tensor): ``[H, N, d]`` keys.
        v (torch.Tensor): ``[H, N, Dv]`` values.
        weight_ones (torch.Tensor): ``[H, m, d + 1]`` ``[W, 1]``.
        bias (torch.Tensor, optional): ``[H, 1, m]``.
        mask (torch.Tensor, optional): ``[N]`` bool, True = real key.
        kappa (float): coefficient of ``||k_j||^2``.
        chunk (int): keys per chunk.
        work (_Workspace): buffers.
        offsets (torch.Tensor): ``[H, N, 1]``, written: ``-kappa ||k_j||^2`` (``-inf`` at padding), which the backward
            pass reuses.

    Returns:
        ``(S [H, m, Dv + 1], M [H, 1, 1])``; M is 0 when every key is padding (S is then 0).
    """
    spans = _chunks(k.shape[1], chunk)
    states = v.new_empty(len(spans), v.shape[0], weight_ones.shape[1], v.shape[-1] + 1)
    tops = v.new_empty(len(spans), v.shape[0], 1, 1)
    for i, (start, stop) in enumerate(spans):
        joined = _joined_keys(k[:, start:stop], work)
        offsets_c = _key_offsets(joined[..., :-1], None if mask is None else mask[start:stop], kappa,
                                 offsets[:, start:stop])
        joined[..., -1:] = offsets_c
        e = _key_exponent(joined, weight_ones, bias, work, "exponent")
        top = torch.amax(e, dim=(-2, -1), keepdim=True, out=tops[i])
        e.sub_(torch.nan_to_num(top, neginf=0.0)).exp_()  # a -inf top: the chunk is all padding
        torch.bmm(e.transpose(1, 2), work.joined("values", v[:, start:stop]), out=states[i])
    if len(spans) == 1:
        return states[0], torch.nan_to_num(tops[0], neginf=0.0)
    top = torch.nan_to_num(tops.amax(dim=0), neginf=0.0)
    return (states * tops.sub_(top).exp_()).sum(dim=0), top


def _feature_attention(state, weight, bias, eps):
    """Softmax attention over the features: values ``U``, query weights ``[W, b]`` with ``b = c + log z'``.

    Args:
        state (torch.Tensor): ``[H, m, Dv + 1]`` S.
        weight (torch.Tensor): ``[H, m, d]`` W.
        bias (torch.Tensor, optional): ``[H, 1, m]`` c.
        eps (float): added to z.

    Returns:
        ``(U [H, m, Dv], [W, b] [H, m, d + 1], z' [H, m, 1])``.
    """
    dv = state.shape[-1] - 1
    z = state[..., dv:] + eps
    logits = z.log() if bias is None else z.log() + bias.transpose(1, 2)
    return state[..., :dv] / z, torch.cat([weight, logits], dim=-1), z


def _feature_weights(q, weight_logits, work):
    """``a = softmax([q, 1] [W, b]^T)``: ``[H, C, m]`` in the workspace, for ``q [H, C, d]``."""
    e = torch.bmm(work.joined("queries", q), weight_logits.transpose(1, 2),
                  out=work.get("exponent", q.shape[1], weight_logits.shape[1]))
    return torch.softmax(e, dim=-1, out=e)


def _attend_queries(q, state, weight, bias, eps, chunk, work, out):
    """Write ``out = softmax([q, 1] [W, b]^T) U`` chunk by chunk into ``out [H, N, Dv]`` (any strides).

    Args:
        q (torch.Tensor): ``[H, N, d]``.
        state (torch.Tensor): ``[H, m, Dv + 1]``.
    """
    values, weight_logits, _ = _feature_attention(state, weight, bias, eps)
    for start, stop in _chunks(q.shape[1], chunk):
        torch.bmm(_feature_weights(q[:, start:stop], weight_logits, work), values, out=out[:, start:stop])


def _query_gradients(q, grad_out, state, weight, bias, eps, chunk, work, grad_q, grad_w, grad_c):
    """Gradients through the queries; returns d loss / d S ``[H, m, Dv + 1]``. ``grad_*`` (or None) are filled.

    Args:
        q (torch.Tensor): ``[H, N, d]``.
        grad_out (torch.Tensor): ``[H, N, Dv]``.
        state (torch.Tensor): ``[H, m, Dv + 1]``.
        weight (torch.Tensor): ``[H, m, d]``.
        bias (torch.Tensor, optional): ``[H, 1, m]``.
        grad_q, grad_w, grad_c (torch.Tensor, optional): ``[H, N, d]`` written, ``[H, m, d]``, ``[H, 1, m]``
            accumulated.
    """
    queries = _QueryBackward(state, weight, bias, eps, grad_w)
    for start, stop in _chunks(q.shape[1], chunk):
        queries.chunk(q[:, start:stop], grad_out[:, start:stop], work,
                      None if grad_q is None else grad_q[:, start:stop])
    return queries.state_gradient(grad_c)


class _QueryBackward:
    """The queries' backward pass, one chunk at a time: d loss / d q per chunk, d loss / d S at the end.

    Args:
        state (torch.Tensor): ``[H, m, Dv + 1]`` S.
        weight (torch.Tensor): ``[H, m, d]`` W.
        bias (torch.Tensor, optional): ``[H, 1, m]`` c.
        eps (float): the forward pass's eps.
        grad_w (torch.Tensor, optional): ``[H, m, d]``, accumulated.
    """

    def __init__(self, state, weight, bias, eps, grad_w):
        self.state, self.weight, self.grad_w = state, weight, grad_w
        self.values, self.weight_logits, self.z = _feature_attention(state, weight, bias, eps)
        self.grad_values = torch.zeros_like(self.values)
        self.grad_logits = torch.zeros_like(self.z)

    def chunk(self, q_c, grad_out_c, work, grad_q_c=None):
        """Write ``grad_q_c [H, C, d]`` (any strides; None: skipped) for ``q_c [H, C, d]``, ``grad_out_c [H, C, Dv]``.

        Returns the chunk's feature weights ``a = softmax([q, 1] [W, b]^T)``, ``[H, C, m]`` (a workspace buffer, valid
        until the next chunk): ``a U`` is the chunk's attention output.
        """
        weights = _feature_weights(q_c, self.weight_logits, work)
        self.grad_values.baddbmm_(weights.transpose(1, 2), grad_out_c)
        g_e = torch.bmm(grad_out_c, self.values.transpose(1, 2),
                        out=work.get("features", q_c.shape[1], weights.shape[-1]))
        g_e.mul_(weights)  # the softmax backward pass: a (g - <g, a>)
        g_e.addcmul_(weights, g_e.sum(dim=-1, keepdim=True), value=-1.0)
        if grad_q_c is not None:
            torch.bmm(g_e, self.weight, out=grad_q_c)
        self.grad_logits.add_(g_e.sum(dim=-2).unsqueeze(-1))
        if self.grad_w is not None:
            self.grad_w.baddbmm_(g_e.transpose(1, 2), q_c)
        return weights

    def state_gradient(self, grad_c=None):
        """d loss / d S ``[H, m, Dv + 1]`` once every chunk is done; accumulates ``grad_c [H, 1, m]`` if given."""
        if grad_c is not None:
            grad_c.add_(self.grad_logits.transpose(1, 2))
        values, z = self.values, self.z
        grad_z = (self.grad_logits - (self.grad_values * values).sum(dim=-1, keepdim=True)) / z
        grad_state = torch.cat([self.grad_values / z, grad_z], dim=-1)
        # no real key (z = 0): the output is 0 whatever S is; a division by eps must not reach the keys as inf or nan
        return torch.where(self.state[..., -1:] > 0, grad_state, 0.0)


def _key_gradients(k, v, grad_state, weight_ones, bias, offsets, top, kappa, chunk, work, grad_k, grad_v, grad_w,
                   grad_c):
    """Gradients through the keys and values, given d loss / d S; ``grad_*`` (or None) are filled.

    ``weight_ones [H, m, d + 1]`` is ``[W, 1]``: one matmul also gives the row sums of ``g_e`` that the norm term
    ``-kappa ||k||^2`` needs. ``offsets [H, N, 1]`` are the forward pass's ``-kappa ||k_j||^2`` (``-inf`` at
    padding), ``top [H, 1, 1]`` its key constant M.
    """
    for start, stop in _chunks(k.shape[1], chunk):
        span = slice(start, stop)
        _key_chunk_gradients(k[:, span], v[:, span], offsets[:, span], grad_state, weight_ones, bias, top, kappa, work,
                             None if grad_k is None else grad_k[:, span], None if grad_v is None else grad_v[:, span],
                             grad_w, grad_c)


def _key_chunk_gradients(k_c, v_c, offsets_c, grad_state, weight_ones, bias, top, kappa, work, grad_k_c, grad_v_c,
                         grad_w, grad_c):
    """:func:`_key_gradients` for one chunk ``k_c [H, C, d]``, ``v_c [H, C, Dv]``, ``offsets_c [H, C, 1]``: writes
    ``grad_k_c``, ``grad_v_c`` (any strides; None: skipped), accumulates ``grad_w``, ``grad_c``."""
    dv, d, rows = v_c.shape[-1], k_c.shape[-1], k_c.shape[1]
    joined = _joined_keys(k_c, work)
    torch.sub(offsets_c, top, out=joined[..., d:])
    kf = _key_exponent(joined, weight_ones, bias, work, "features").exp_()
    if grad_v_c is not None:
        torch.bmm(kf, grad_state[..., :dv], out=grad_v_c)
    values = work.joined("values", v_c)
    g_e = torch.bmm(values, grad_state.transpose(1, 2), out=work.get("exponent", rows, kf.shape[-1])).mul_(kf)
    if grad_k_c is not None:
        sums = torch.bmm(g_e, weight_ones, out=work.get("keys", rows, d + 1))  # the keys are read
        torch.addcmul(sums[..., :d], k_c, sums[..., d:], value=-2 * kappa, out=grad_k_c)
    if grad_w is not None:
        grad_w.baddbmm_(g_e.transpose(1, 2), k_c)
    if grad_c is not None:
        grad_c.add_(g_e.sum(dim=-2, keepdim=True))


def _with_ones(weight: torch.Tensor) -> torch.Tensor:
    """``[W, 1]``: ``[..., m, d + 1]``."""
    return torch.cat([weight, weight.new_ones(*weight.shape[:-1], 1)], dim=-1)


def key_states(k, v, weight, bias, mask, kappa: float, chunk: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The keys' pass of the forward: ``S [B, H, m, Dv + 1]``, the key constants ``M [B, H, 1, 1]`` and the key
    offsets ``-kappa ||k_j||^2`` ``[B, H, N, 1]`` (``-inf`` at padding) for the backward pass.

    Args:
        k (torch.Tensor): ``[B, H, N, d]`` keys (any strides).
        v (torch.Tensor): ``[B, H, N, Dv]`` values.
        weight (torch.Tensor): ``[H, m, d]`` or ``[B or 1, H, m, d]`` W.
        bias (torch.Tensor, optional): ``[B or 1, H, 1, m]`` c.
        mask (torch.Tensor, optional): bool ``[B, N]``, True = real key.
        kappa (float): coefficient of ``||k_j||^2``.
        chunk (int): the backward pass's chunk length (this pass takes chunks twice as long).
    """
    rows = min(_FORWARD_ROWS * chunk, v.shape[2])
    work = _Workspace(v, v.shape[1], rows)
    weight_ones = _with_ones(weight)
    offsets = v.new_empty(*k.shape[:-1], 1)
    states, tops = zip(*(_key_state(k[i], v[i], _of_batch(weight_ones, i), _of_batch(bias, i),
                                    None if mask is None else mask[i], kappa, rows, work, offsets[i])
                         for i in range(v.shape[0])))
    return torch.stack(states), torch.stack(tops), offsets


def attend_states(q, states, weight, bias, eps: float, chunk: int) -> torch.Tensor:
    """The queries' pass of the forward: token-major ``out [B, N, H, Dv]`` for ``q [B, H, N, d]`` (any strides) and
    ``S [B, H, m, Dv + 1]`` of :func:`key_states`; ``weight``, ``bias`` as there."""
    b, h, n, _ = q.shape
    out = q.new_empty(b, n, h, states.shape[-1] - 1)
    rows = min(_FORWARD_ROWS * chunk, n)
    work = _Workspace(q, h, rows)
    for i in range(b):
        _attend_queries(q[i], states[i], _of_batch(weight, i), _of_batch(bias, i), eps, rows, work,
                        out[i].transpose(0, 1))
    return out


class _KeyState(torch.autograd.Function):
    """``(k, v [B, H, N, .], W, c, mask, kappa, chunk)`` -> ``S [B, H, m, Dv + 1]`` at the key constant M.

    M is treated as a constant: the attention output does not depend on it, so its gradient there is exact.
    """

    @staticmethod
    def forward(ctx, k, v, weight, bias, mask, kappa, chunk):
        states, tops, offsets = key_states(k, v, weight, bias, mask, kappa, chunk)
        ctx.save_for_backward(k, v, weight, bias, offsets, tops)
        ctx.kappa, ctx.chunk = kappa, chunk
        return states

    @staticmethod
    def backward(ctx, grad_states):
        k, v, weight, bias, offsets, tops = ctx.saved_tensors
        need_k, need_v, need_w, need_c = ctx.needs_input_grad[:4]
        grad_k = torch.empty_like(k) if need_k else None
        grad_v = torch.empty_like(v) if need_v else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_c = torch.zeros_like(bias) if need_c else None
        weight_ones = _with_ones(weight)
        work = _Workspace(v, v.shape[1], min(ctx.chunk, v.shape[2]))
        for i in range(v.shape[0]):
            _key_gradients(k[i], v[i], grad_states[i], _of_batch(weight_ones, i), _of_batch(bias, i),
                           offsets[i], tops[i], ctx.kappa, ctx.chunk, work,
                           *(_of_batch(t, i) for t in (grad_k, grad_v, grad_w, grad_c)))
        return grad_k, grad_v, grad_w, grad_c, None, None, None


class _QueryAttention(torch.autograd.Function):
    """``(q [B, H, N, d], S [B, H, m, Dv + 1], W, c, eps, chunk)`` -> token-major ``out [B, N, H, Dv]``."""

    @staticmethod
    def forward(ctx, q, states, weight, bias, eps, chunk):
        ctx.save_for_backward(q, states, weight, bias)
        ctx.eps, ctx.chunk = eps, chunk
        return attend_states(q, states, weight, bias, eps, chunk)

    @staticmethod
    def backward(ctx, grad_out):
        q, states, weight, bias = ctx.saved_tensors
        need_q, _, need_w, need_c = ctx.needs_input_grad[:4]
        grad_q = torch.empty_like(q) if need_q else None
        grad_w = torch.zeros_like(weight) if need_w else None
        grad_c = torch.zeros_like(bias) if need_c else None
        grad_out = grad_out.transpose(1, 2)  # [B, H, N, Dv]
        work = _Workspace(q, q.shape[1], min(ctx.chunk, q.shape[2]))
        grad_states = torch.stack([
            _query_gradients(q[i], grad_out[i], states[i], _of_batch(weight, i), _of_batch(bias, i), ctx.eps,
                             ctx.chunk, work, *(_of_batch(t, i) for t in (grad_q, grad_w, grad_c)))
            for i in range(q.shape[0])
        ])
        return grad_q, grad_states, grad_w, grad_c, None, None


def lean_positive_feature_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    key_padding_mask: torch.Tensor | None = None,
    kappa: float = 0.5,
    eps: float | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Non-causal normalised GERF-family attention without stored feature maps.

    Args:
        q (torch.Tensor): ``[B, H, N, d]`` queries (raw; any scale is folded into ``weight``); any strides, e.g. the
            head view of a token-major ``[B, N, H * d]`` projection.
        k (torch.Tensor): ``[B, H, N, d]`` keys.
        v (torch.Tensor): ``[B, H, N, Dv]`` values.
        weight (torch.Tensor): ``[H, m, d]`` or ``[B, H, m, d]`` folded rows ``B s omega_r``.
        bias (torch.Tensor, optional): ``[B or 1, H, 1, m]`` row terms ``A ||omega_r||^2``; None for A = 0.
        key_padding_mask (torch.Tensor, optional): bool ``[B, N]``, True = real token.
        kappa (float): coefficient of ``||k_j||^2`` in the key exponent (``s^2 / 2`` softmax, ``s^2`` Gaussian).
        eps (float, optional): keeps a sequence without real keys finite; default the accumulation dtype's smallest
            normal number.
        chunk_size (int): rows per chunk of the backward pass (the forward pass takes chunks twice as long); the
            working memory is about ``2 H chunk_size m`` numbers. Fewer, longer chunks mean fewer operations.

    Returns:
        torch.Tensor: ``[B, H, N, Dv]`` in the dtype of ``v``, a view of token-major ``[B, N, H, Dv]`` memory.
    """
    if q.dim() != 4 or k.shape != q.shape or v.shape[:-1] != q.shape[:-1]:
        raise ValueError(f"expected q, k [B, H, N, d] and v [B, H, N, Dv], got {tuple(q.shape)}, {tuple(k.shape)}, "
                         f"{tuple(v.shape)}")
    if weight.shape[-1] != q.shape[-1]:
        raise ValueError(f"weight rows have width {weight.shape[-1]}, queries {q.shape[-1]}")
    acc = accumulation_dtype(q.dtype)
    eps = torch.finfo(acc).tiny if eps is None else eps
    q, k, v, weight, bias = (t.to(acc) if t is not None else None for t in (q, k, v, weight, bias))
    mask = None if key_padding_mask is None else key_padding_mask.to(torch.bool)
    states = _KeyState.apply(k, v, weight, bias, mask, float(kappa), int(chunk_size))
    out = _QueryAttention.apply(q, states, weight, bias, float(eps), int(chunk_size))
    return out.transpose(1, 2).to(v.dtype)
