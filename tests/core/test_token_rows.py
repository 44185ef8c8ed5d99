"""Packing a padded batch's real tokens into rows and back, against loops over the mask."""

import pytest
import torch

import core
from core.ops.token_rows import gather_rows, real_token_rows, scatter_rows


def test_rows_list_the_real_tokens_in_order_and_round_trip():
    mask = torch.tensor([[True, True, False, False], [True, True, True, True], [True, False, False, False]])
    rows = real_token_rows(mask)
    expected = [b * 4 + t for b in range(3) for t in range(4) if mask[b, t]]
    assert rows.tolist() == expected
    x = torch.randn(3, 4, 5)
    packed = gather_rows(x, rows)
    assert packed.shape == (7, 5)
    for row, flat in zip(packed, expected):
        assert torch.equal(row, x[flat // 4, flat % 4])
    unpacked = scatter_rows(packed, rows, 3, 4)
    assert torch.equal(unpacked[mask], x[mask]) and not unpacked[~mask].any()


def test_gradients_flow_to_the_real_rows_only():
    mask = torch.tensor([[True, False, True], [False, True, True]])
    rows = real_token_rows(mask)
    x = torch.randn(2, 3, 4, requires_grad=True)
    scatter_rows(gather_rows(x, rows) * 2.0, rows, 2, 3).sum().backward()
    assert torch.equal(x.grad, 2.0 * mask[..., None].expand(2, 3, 4).to(x.dtype))


def test_primal_original_padding_projects_every_token_even_with_real_tokens_only():
    """The official behaviour samples padded tokens, so their projections must stay as they are."""
    torch.manual_seed(0)
    plain = core.build_attention("primal", 16, 2, original_padding=True).double().eval()
    packed = core.build_attention("primal", 16, 2, original_padding=True, real_tokens_only=True).double().eval()
    packed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 6, 16, dtype=torch.float64)
    mask = torch.arange(6)[None, :] < torch.tensor([[6], [3]])
    torch.testing.assert_close(packed(x, key_padding_mask=mask), plain(x, key_padding_mask=mask), rtol=0, atol=0)


def test_mechanisms_with_their_own_forward_pass_refuse_the_option():
    with pytest.raises(ValueError, match="does not support real_tokens_only"):
        core.build_attention("performer", 16, 2, real_tokens_only=True)
