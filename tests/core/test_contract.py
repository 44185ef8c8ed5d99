"""The contract every registered mechanism meets; parametrised over the registry, so new entries are tested
without a new test."""

from __future__ import annotations

import pytest
import torch

import core
from core.attention.base import load_shared_projections

DIM, HEADS, N, B = 32, 4, 24, 3
NAMES = core.list_attentions()
CAUSAL_NAMES = core.list_attentions(causal=True)
MASK_NAMES = core.list_attentions(key_padding_mask=True)


def skip_if_exempt(name: str, clause: str) -> None:
    """A mechanism whose math cannot meet a clause declares it, with the reason, in the class attribute
    ``contract_exemptions = {clause: reason}``; the test then skips visibly with that reason.

    Clauses: batch_independence, padding_invariance, padding_equals_unpadded, shared_projections."""
    reason = getattr(core.attention_class(name), "contract_exemptions", {}).get(clause)
    if reason:
        pytest.skip(f"{name}: {clause} exempt: {reason}")


def build(name: str, causal: bool = False, dtype=torch.float64, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return core.build_attention(name, DIM, HEADS, causal=causal, **options).to(dtype).eval()


def inputs(dtype=torch.float64, batch=B, length=N, seed=1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, length, DIM, generator=generator, dtype=dtype)


def test_registry_lists_the_foundation_mechanisms():
    assert {"softmax", "primal", "linear", "efficient", "cosine"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_info_is_a_frozen_dataclass_with_flags(name):
    info = core.attention_info(name)
    assert info.name == name
    assert isinstance(info.causal, bool) and isinstance(info.key_padding_mask, bool)
    assert info.approximates in ("softmax", "gaussian", None)
    assert info.complexity.startswith("O(")
    with pytest.raises(AttributeError):
        info.causal = not info.causal  # frozen


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_shape_and_dtype(name, dtype):
    module = build(name, dtype=dtype)
    out = module(inputs(dtype))
    assert out.shape == (B, N, DIM) and out.dtype == dtype
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_gradient_reaches_every_parameter(name):
    module = build(name).train()
    x = inputs().requires_grad_(True)
    loss = module(x).pow(2).mean() + core.ksvd_loss(module)
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for pname, parameter in module.named_parameters():
        assert parameter.grad is not None, f"{name}: no gradient for {pname}"
        assert parameter.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name):
    skip_if_exempt(name, "batch_independence")
    module = build(name)
    x = inputs()
    full = module(x)
    for i in range(B):
        single = module(x[i : i + 1])
        torch.testing.assert_close(full[i : i + 1], single, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", CAUSAL_NAMES)
@pytest.mark.parametrize("t", [0, 7, N - 2])
def test_causal_perturbation(name, t):
    """Changing tokens after t leaves outputs up to t unchanged, and does change later outputs."""
    module = build(name, causal=True)
    x = inputs()
    y = x.clone()
    y[:, t + 1 :] = torch.randn_like(y[:, t + 1 :]) * 3
    out_x, out_y = module(x), module(y)
    torch.testing.assert_close(out_x[:, : t + 1], out_y[:, : t + 1], rtol=1e-9, atol=1e-10)
    assert not torch.allclose(out_x[:, t + 1 :], out_y[:, t + 1 :])


@pytest.mark.parametrize("name", MASK_NAMES)
@pytest.mark.parametrize("causal", [False, True])
def test_padding_invariance(name, causal):
    """Real tokens' outputs do not depend on what sits in padded positions, and equal the unpadded run."""
    if causal and not core.attention_info(name).causal:
        pytest.skip(f"{name} has no causal form")
    skip_if_exempt(name, "padding_invariance")
    module = build(name, causal=causal)
    lengths = [N, 15, 9]
    x = inputs()
    mask = torch.arange(N)[None, :] < torch.tensor(lengths)[:, None]
    noisy = torch.where(mask[..., None], x, torch.randn_like(x) * 5)
    out_x, out_noisy = module(x, key_padding_mask=mask), module(noisy, key_padding_mask=mask)
    for i, length in enumerate(lengths):
        torch.testing.assert_close(out_x[i, :length], out_noisy[i, :length], rtol=1e-9, atol=1e-10)
    if getattr(core.attention_class(name), "contract_exemptions", {}).get("padding_equals_unpadded"):
        return
    for i, length in enumerate(lengths):
        alone = module(x[i : i + 1, :length])
        torch.testing.assert_close(out_x[i : i + 1, :length], alone, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_clear_errors(name):
    module = build(name)
    with pytest.raises(ValueError, match=r"expected x of shape \(B, N, 32\)"):
        module(torch.randn(2, 5, DIM + 1, dtype=torch.float64))
    with pytest.raises(ValueError, match="expected x of shape"):
        module(torch.randn(5, DIM, dtype=torch.float64))
    with pytest.raises(ValueError, match="key_padding_mask of shape"):
        module(inputs(), key_padding_mask=torch.ones(B, N + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="bool"):
        module(inputs(), key_padding_mask=torch.zeros(B, N))
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        core.build_attention(name, 30, 4)


@pytest.mark.parametrize("name", sorted(set(NAMES) - set(CAUSAL_NAMES)))
def test_non_causal_mechanisms_refuse_causal(name):
    with pytest.raises(ValueError, match="no causal form"):
        core.build_attention(name, DIM, HEADS, causal=True)


@pytest.mark.parametrize("name", [n for n in NAMES if not core.attention_info(n).key_padding_mask])
def test_mechanisms_without_mask_support_refuse_masks(name):
    module = build(name)
    with pytest.raises(ValueError, match="mask"):
        module(inputs(), key_padding_mask=torch.ones(B, N, dtype=torch.bool))


def test_unknown_name_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown attention 'softmx'"):
        core.build_attention("softmx", DIM, HEADS)


@pytest.mark.parametrize("name", NAMES)
def test_softmax_state_dict_loads_with_only_own_parameters_missing(name):
    """Swapping attention in a trained model is one line: shared projections load, only extras are missing."""
    skip_if_exempt(name, "shared_projections")
    softmax = build("softmax")
    module = build(name)
    missing = load_shared_projections(module, softmax.state_dict())
    shared = {k for k in softmax.state_dict() if k in module.state_dict()}
    assert {"q_proj.weight", "k_proj.weight", "out_proj.weight"} <= shared
    assert set(missing) == set(module.state_dict()) - shared
    for key in shared:
        torch.testing.assert_close(module.state_dict()[key], softmax.state_dict()[key])


@pytest.mark.parametrize("name", [n for n in CAUSAL_NAMES if core.attention_info(n).incremental])
def test_incremental_decoding_equals_parallel(name):
    module = build(name, causal=True)
    x = inputs(batch=2, length=17)
    parallel = module(x)
    state = None
    steps = []
    for t in range(x.shape[1]):
        y, state = module.step(x[:, t], state)
        steps.append(y)
    torch.testing.assert_close(torch.stack(steps, dim=1), parallel, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_attention_matrix_shape_when_defined(name):
    module = build(name)
    try:
        matrix = module.attention_matrix(inputs())
    except NotImplementedError:
        pytest.skip(f"{name} defines no explicit attention matrix")
    assert matrix.shape == (B, HEADS, N, N)
