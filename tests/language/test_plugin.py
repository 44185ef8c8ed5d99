"""Plugin wiring in-process: layer selection, options, projections shared with fairseq's init, the KSVD criterion."""

from __future__ import annotations

import pytest
import torch
from fairseq.modules import MultiheadAttention

import core
from language.fairseq_plugin.adapter import CoreSelfAttention
from language.fairseq_plugin.criterion import KSVDCrossEntropyCriterion
from language.fairseq_plugin.model import parse_layers, parse_options


def test_parse_layers():
    assert parse_layers("-1", 6) == [5]
    assert parse_layers("0, 2,-1", 6) == [0, 2, 5]
    assert parse_layers("all", 3) == [0, 1, 2]
    with pytest.raises(ValueError, match="does not exist"):
        parse_layers("6", 6)
    with pytest.raises(ValueError, match="not an integer"):
        parse_layers("last", 6)


def test_parse_options():
    assert parse_options('{"low_rank": 8}') == {"low_rank": 8}
    assert parse_options("") == {}
    with pytest.raises(ValueError, match="JSON object"):
        parse_options("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        parse_options("low_rank=8")


def test_any_causal_attention_in_any_layer(build_lm, dict_dir):
    _, model, _ = build_lm(
        dict_dir, "core_attention_lm", "--core-attention", "linear", "--core-attention-layers", "0,2", layers=3
    )
    kinds = [type(layer.self_attn) for layer in model.decoder.layers]
    assert kinds == [CoreSelfAttention, MultiheadAttention, CoreSelfAttention]
    assert model.decoder.layers[0].self_attn.attention.registry_name == "linear"


def test_primal_options_and_shared_projections(build_lm, dict_dir):
    torch.manual_seed(3)
    _, model, _ = build_lm(
        dict_dir, "transformer_lm_primal", "--core-attention-options", '{"low_rank": 7}', "--seed", "3", layers=2
    )
    attn = model.decoder.layers[-1].self_attn.attention
    assert attn.low_rank == 7 and attn.causal
    # fairseq's MultiheadAttention init (xavier with gain 1/sqrt(2)) was carried over, not nn.Linear's default
    bound = (6 / (2 * 32)) ** 0.5 / 2**0.5
    assert attn.q_proj.weight.abs().max() <= bound + 1e-6
    assert attn.q_proj.weight.abs().max() > 0.8 * bound


def test_non_causal_mechanism_is_refused():
    non_causal = [name for name in core.list_attentions() if not core.attention_info(name).causal]
    if not non_causal:
        pytest.skip("every registered mechanism has a causal form")
    with pytest.raises(ValueError, match="causal"):
        CoreSelfAttention(non_causal[0], 32, 2)


@pytest.mark.parametrize("scaling", ["token", "sum"])
def test_ksvd_criterion_scaling(build_lm, dict_dir, scaling):
    task, model, cfg = build_lm(dict_dir, "transformer_lm_primal")
    assert cfg.criterion.ksvd_eta == 0.1 and cfg.criterion.ksvd_scaling == "token"  # the defaults
    criterion = KSVDCrossEntropyCriterion(task, sentence_avg=False, ksvd_eta=0.5, ksvd_scaling=scaling)
    model.eval()
    tokens = torch.randint(4, len(task.target_dictionary), (3, 10), generator=torch.Generator().manual_seed(5))
    sample = {
        "net_input": {"src_tokens": tokens[:, :-1], "src_lengths": torch.full((3,), 9)},
        "target": tokens[:, 1:].contiguous(),
        "ntokens": 27,
    }
    core.ksvd_loss(model)  # drop records of earlier passes
    with torch.no_grad():
        model(tokens[:, :-1])
        ksvd = core.ksvd_loss(model)
        loss, sample_size, logs = criterion(model, sample)
    assert sample_size == 27 and ksvd > 0
    expected = 0.5 * ksvd * (27 if scaling == "token" else 1)
    # in float32 a summed NLL of ~100 resolves 1e-5; "sum" adds eta * ksvd ~ 1e-3, "token" 27 times more
    torch.testing.assert_close(loss, logs["nll_loss"] + expected.to(loss.dtype), rtol=0, atol=2e-5)
    torch.testing.assert_close(logs["ksvd"] / 27, ksvd, rtol=1e-5, atol=1e-7)


def test_ksvd_gradient_reaches_primal_parameters(build_lm, dict_dir):
    task, model, cfg = build_lm(dict_dir, "transformer_lm_primal")
    criterion = task.build_criterion(cfg.criterion)
    tokens = torch.randint(4, len(task.target_dictionary), (2, 8), generator=torch.Generator().manual_seed(6))
    sample = {"net_input": {"src_tokens": tokens[:, :-1]}, "target": tokens[:, 1:].contiguous(), "ntokens": 14}
    model.zero_grad()
    loss, _, _ = criterion(model, sample)
    loss.backward()
    attn = model.decoder.layers[-1].self_attn.attention
    assert attn.lambdas.grad is not None and attn.lambdas.grad.abs().sum() > 0  # only the KSVD term uses Lambda
    model.zero_grad()
