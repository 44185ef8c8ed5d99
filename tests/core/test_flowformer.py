"""Flow-Attention: the fast op against the direct transcription of the upstream code, in float64."""

import pytest
import torch

import core
from core.ops.flow import flow_attention, flow_attention_matrix, flow_attention_step, reference_flow_attention


def features(b=2, h=3, n=19, f=4, dv=5, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.sigmoid(scale * torch.randn(b, h, n, f, generator=g, dtype=torch.float64))
    k = torch.sigmoid(scale * torch.randn(b, h, n, f, generator=g, dtype=torch.float64))
    v = torch.randn(b, h, n, dv, generator=g, dtype=torch.float64)
    return q, k, v


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("source_clamp", [1.0, None, 0.05])
def test_fast_op_equals_transcription(causal, source_clamp):
    q, k, v = features(scale=3.0)
    expected = reference_flow_attention(q, k, v, causal=causal, source_clamp=source_clamp)
    for chunk in (1, 4, 64):
        out = flow_attention(q, k, v, causal=causal, source_clamp=source_clamp, chunk_size=chunk)
        torch.testing.assert_close(out, expected, rtol=1e-10, atol=1e-12)


def test_clamp_changes_the_output():
    """The clamp is active on these inputs, so the clamp tests above compare two different functions."""
    q, k, v = features(scale=3.0)
    assert not torch.allclose(reference_flow_attention(q, k, v, source_clamp=0.05), reference_flow_attention(q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_padding_equals_the_transcription_on_real_tokens_only(causal):
    """Any mask (not only right padding): real outputs equal the transcription run on the real tokens alone."""
    q, k, v = features()
    mask = torch.rand(2, 19, generator=torch.Generator().manual_seed(5)) > 0.35
    out = flow_attention(q, k, v, mask, causal=causal, chunk_size=4)
    for b in range(2):
        keep = mask[b]
        alone = reference_flow_attention(q[b : b + 1, :, keep], k[b : b + 1, :, keep], v[b : b + 1, :, keep], causal=causal)
        torch.testing.assert_close(out[b : b + 1, :, keep], alone, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matrix_reproduces_the_output(causal):
    q, k, v = features()
    mask = torch.arange(19)[None, :] < torch.tensor([19, 11])[:, None]
    matrix = flow_attention_matrix(q, k, mask, causal=causal)
    torch.testing.assert_close(matrix @ v, flow_attention(q, k, v, mask, causal=causal), rtol=1e-10, atol=1e-12)
    assert (matrix[1, :, :11, 11:] == 0).all()


@pytest.mark.parametrize("causal", [False, True])
def test_module_equals_transcription_on_its_projections(causal):
    torch.manual_seed(0)
    module = core.build_attention("flowformer", 24, 3, causal=causal).double()
    x = torch.randn(2, 17, 24, dtype=torch.float64)
    q, k, v = module.project_qkv(x)
    core_out = reference_flow_attention(torch.sigmoid(q), torch.sigmoid(k), v, causal=causal)
    expected = module.out_proj(module.merge_heads(core_out))
    torch.testing.assert_close(module(x), expected, rtol=1e-10, atol=1e-12)


def test_invalid_clamp_is_refused():
    with pytest.raises(ValueError, match="source_clamp"):
        core.build_attention("flowformer", 24, 3, source_clamp=0.0)


@pytest.mark.parametrize("source_clamp", [1.0, None])
def test_recurrent_steps_equal_the_causal_form(source_clamp):
    q, k, v = features(scale=2.0)
    expected = reference_flow_attention(q, k, v, causal=True, source_clamp=source_clamp)
    state, outs = None, []
    for t in range(q.shape[2]):
        out, state = flow_attention_step(q[:, :, t], k[:, :, t], v[:, :, t], state, source_clamp=source_clamp)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, dim=2), expected, rtol=1e-10, atol=1e-12)
