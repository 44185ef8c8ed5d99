"""Reformer LSH attention: the chunked op against dense softmax restricted to the same buckets, in float64."""

import pytest
import torch

import core
from core.ops.lsh import lsh_allowed_counts, lsh_attention, lsh_buckets, reference_lsh_attention


def inputs(b=2, h=2, n=37, d=8, rounds=3, buckets=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(b, h, n, d, generator=g, dtype=torch.float64)
    v = torch.randn(b, h, n, 5, generator=g, dtype=torch.float64)
    rotations = torch.randn(h, rounds, d, buckets // 2, generator=g, dtype=torch.float64)
    return q, v, rotations


@pytest.mark.parametrize("chunk", [1, 4, 7, 37, 64])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dedupe", [False, True])
def test_chunked_equals_dense_bucket_restricted_softmax(chunk, masked, dedupe):
    q, v, rotations = inputs()
    mask = torch.rand(2, 37, generator=torch.Generator().manual_seed(1)) > 0.3 if masked else None
    buckets = lsh_buckets(q, rotations, mask)
    out = lsh_attention(q, v, buckets, chunk, mask, dedupe)
    expected = reference_lsh_attention(q, v, buckets, chunk, mask, dedupe)
    real = slice(None) if mask is None else mask[:, None, :, None].expand_as(out)
    torch.testing.assert_close(out[real], expected[real], rtol=1e-10, atol=1e-12)


def test_dedupe_changes_the_weights_when_rounds_overlap():
    q, v, rotations = inputs()
    buckets = lsh_buckets(q, rotations)
    assert not torch.allclose(lsh_attention(q, v, buckets, 4), lsh_attention(q, v, buckets, 4, dedupe=True))


def test_the_restriction_is_real():
    """Several buckets and chunks: the allowed sets are neither everything nor only self."""
    q, v, rotations = inputs()
    counts = lsh_allowed_counts(lsh_buckets(q, rotations), 4)
    allowed = (counts > 0).float().mean()
    assert 0.05 < allowed < 0.5
    assert (counts == 3).any() and (counts == 1).any()


def test_one_bucket_one_chunk_is_softmax_without_self():
    """With a single bucket and a single chunk, LSH attention is shared-QK softmax with self masked out."""
    q, v, _ = inputs(rounds=1)
    buckets = torch.zeros(2, 2, 1, 37, dtype=torch.long)
    keys = torch.nn.functional.normalize(q, dim=-1)
    scores = q @ keys.transpose(-1, -2) - 1e5 * torch.eye(37, dtype=torch.float64)
    expected = torch.softmax(scores, dim=-1) @ v
    torch.testing.assert_close(lsh_attention(q, v, buckets, 64), expected, rtol=1e-10, atol=1e-12)


def test_buckets_follow_the_angular_hash():
    q, _, rotations = inputs(rounds=1, buckets=2)
    buckets = lsh_buckets(q, rotations)
    projected = (q @ rotations[None, :, 0])[..., 0]  # (B, H, N): one rotation, buckets 0 (+) and 1 (-)
    torch.testing.assert_close(buckets[:, :, 0], (projected < 0).long())


def test_module_equals_dense_reference_on_its_projections():
    torch.manual_seed(0)
    module = core.build_attention("reformer", 24, 3, num_hashes=2, num_buckets=4, chunk_size=5, dedupe=True).double()
    x = torch.randn(2, 23, 24, dtype=torch.float64)
    q, _, v = module.project_qkv(x)
    expected = reference_lsh_attention(q, v, lsh_buckets(q, module.rotations), 5, dedupe=True)
    torch.testing.assert_close(module(x), module.out_proj(module.merge_heads(expected)), rtol=1e-10, atol=1e-12)
    assert "k_proj.weight" not in module.state_dict()


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="num_buckets"):
        core.build_attention("reformer", 24, 3, num_buckets=5)


def test_half_precision_stays_finite():
    """Chunks of one token: many queries may attend only to themselves, whose logit must stay finite in float16."""
    q, v, rotations = inputs(rounds=1, buckets=8)
    buckets = lsh_buckets(q, rotations)
    out = lsh_attention(q.half(), v.half(), buckets, 1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), lsh_attention(q, v, buckets, 1), rtol=2e-2, atol=2e-2)
