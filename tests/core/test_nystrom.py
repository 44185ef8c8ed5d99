"""Nystromformer: exact at m = N, the SDPA path against explicit factors, padding, the convolution skip."""

import math

import pytest
import torch

import core
from core.ops.nystrom import nystrom_attention, nystrom_attention_weights, segment_ids, segment_means
from core.ops.pinv import newton_schulz_pinv
from core.ops.softmax import reference_softmax_attention


def qkv(b=2, h=2, n=24, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, n, d, generator=g, dtype=torch.float64) for _ in range(3)]


def paper_nystrom(q, k, v, m, iterations=6):
    """Unpadded, N divisible by m: contiguous segment means and the three softmax kernels of the paper."""
    b, h, n, d = q.shape
    q_tilde = q.reshape(b, h, m, n // m, d).mean(3)
    k_tilde = k.reshape(b, h, m, n // m, d).mean(3)
    f = torch.softmax(q @ k_tilde.transpose(-1, -2) / math.sqrt(d), -1)
    a = torch.softmax(q_tilde @ k_tilde.transpose(-1, -2) / math.sqrt(d), -1)
    b_ = torch.softmax(q_tilde @ k.transpose(-1, -2) / math.sqrt(d), -1)
    return f @ newton_schulz_pinv(a, iterations) @ (b_ @ v)


@pytest.mark.parametrize("inverse, iterations", [("exact", 0), ("newton_schulz", 40)])
def test_with_every_token_a_landmark_it_equals_exact_softmax(inverse, iterations):
    q, k, v = qkv()
    out = nystrom_attention(q, k, v, 24, None, iterations, inverse)
    torch.testing.assert_close(out, reference_softmax_attention(q, k, v), rtol=1e-9, atol=1e-11)


def test_with_every_real_token_a_landmark_padding_anywhere_equals_masked_softmax():
    q, k, v = qkv(n=24)
    mask = torch.ones(2, 24, dtype=torch.bool)
    mask[0, [2, 9, 17]] = False
    mask[1, 15:] = False
    out = nystrom_attention(q, k, v, 24, mask, inverse="exact")  # 21 and 15 real tokens: empty segments
    expected = reference_softmax_attention(q, k, v, mask)
    real = mask[:, None, :, None].expand_as(out)
    torch.testing.assert_close(out[real], expected[real], rtol=1e-9, atol=1e-11)


def test_six_iterations_match_the_paper_transcription_and_differ_from_exact():
    q, k, v = qkv(n=32)
    out = nystrom_attention(q, k, v, 8)
    torch.testing.assert_close(out, paper_nystrom(q, k, v, 8), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(nystrom_attention_weights(q, k, 8) @ v, out, rtol=1e-10, atol=1e-12)
    assert (out - reference_softmax_attention(q, k, v)).abs().max() > 1e-3


def test_segments_follow_real_tokens_and_general_lengths():
    mask = torch.tensor([[True, False, True, True, False, True, True, True]])
    ids, counts = segment_ids(mask, 1, 8, 3)
    assert ids[0, mask[0]].tolist() == [0, 0, 1, 1, 2, 2]
    assert counts.tolist() == [[2.0, 2.0, 2.0]]
    ids, counts = segment_ids(None, 1, 7, 3)
    assert ids[0].tolist() == [0, 0, 0, 1, 1, 2, 2] and counts.tolist() == [[3.0, 2.0, 2.0]]
    t = torch.arange(8, dtype=torch.float64).reshape(1, 1, 8, 1)
    ids, counts = segment_ids(mask, 1, 8, 3)
    assert segment_means(t, ids, counts, mask).flatten().tolist() == [1.0, 4.0, 6.5]


def test_masked_general_path_equals_reshape_path_when_nothing_is_padded():
    q, _, _ = qkv(n=32)
    mask = torch.ones(2, 32, dtype=torch.bool)
    ids, counts = segment_ids(mask, 2, 32, 8)
    fast = segment_means(q, *segment_ids(None, 2, 32, 8), None)
    torch.testing.assert_close(segment_means(q, ids, counts, mask), fast)


def test_padding_anywhere_equals_the_compacted_run():
    torch.manual_seed(0)
    m = core.build_attention("nystrom", 16, 2, num_landmarks=4).double().eval()
    x = torch.randn(2, 21, 16, dtype=torch.float64)
    mask = torch.ones(2, 21, dtype=torch.bool)
    mask[0, [1, 7, 8]] = False
    mask[1, :5] = False
    out = m(x, key_padding_mask=mask)
    for i in range(2):
        torch.testing.assert_close(out[i : i + 1, mask[i]], m(x[i : i + 1, mask[i]]), rtol=1e-10, atol=1e-12)


def test_conv_skip_is_a_depthwise_convolution_of_the_values():
    torch.manual_seed(0)
    with_conv = core.build_attention("nystrom", 16, 2, num_landmarks=4, conv_kernel_size=5).double()
    plain = core.build_attention("nystrom", 16, 2, num_landmarks=4).double()
    plain.load_state_dict(with_conv.state_dict(), strict=False)
    x = torch.randn(1, 12, 16, dtype=torch.float64)
    q, k, v = with_conv.project_qkv(x)
    kernel = with_conv.conv.weight[:, 0, :, 0]  # (H, 5)
    padded = torch.nn.functional.pad(v, (0, 0, 2, 2))
    expected_skip = sum(kernel[None, :, j, None, None] * padded[:, :, j : j + 12] for j in range(5))
    torch.testing.assert_close(with_conv.attend(q, k, v, None, x) - plain.attend(q, k, v, None, x), expected_skip)
    mask = torch.ones(1, 12, dtype=torch.bool)
    mask[0, 9:] = False  # right padding: zeroed pads are the convolution's own zero padding
    out = with_conv(x, key_padding_mask=mask)
    torch.testing.assert_close(out[:, :9], with_conv(x[:, :9]), rtol=1e-10, atol=1e-12)


def test_refuses_causal_and_bad_options():
    with pytest.raises(ValueError, match="no causal form"):
        core.build_attention("nystrom", 16, 2, causal=True)
    with pytest.raises(ValueError, match="conv_kernel_size"):
        core.build_attention("nystrom", 16, 2, conv_kernel_size=4)
    with pytest.raises(ValueError, match="inverse"):
        core.build_attention("nystrom", 16, 2, inverse="svd")
