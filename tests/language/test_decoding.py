"""The fairseq adapter: token-by-token decoding equals scoring the whole sequence, causality, beam search."""

from __future__ import annotations

import copy

import pytest
import torch
from fairseq.sequence_generator import SequenceGenerator

import core
from language.fairseq_plugin.model import replace_self_attention

CAUSAL = core.list_attentions(causal=True)
INCREMENTAL = [name for name in CAUSAL if core.attention_info(name).incremental]


def _tokens(task, batch: int, length: int, seed: int = 0) -> torch.Tensor:
    dictionary = task.target_dictionary
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(dictionary.nspecial, len(dictionary), (batch, length), generator=generator)


def _full_log_probs(model, tokens: torch.Tensor) -> torch.Tensor:
    return model.get_normalized_probs(model(tokens), log_probs=True)  # (B, T, V)


def _incremental_log_probs(model, tokens: torch.Tensor, state: dict | None = None) -> torch.Tensor:
    state = {} if state is None else state
    steps = []
    for t in range(tokens.shape[1]):
        out = model.decoder(tokens[:, : t + 1], incremental_state=state)
        steps.append(model.get_normalized_probs(out, log_probs=True)[:, -1])
    return torch.stack(steps, dim=1)


def _with_mechanism(build_lm, dict_dir, name: str):
    """A fresh 2-layer transformer_lm with ``name`` in every layer (one fairseq build, then the plugin's swap)."""
    task, model, _ = build_lm(dict_dir, "core_attention_lm")
    model = copy.deepcopy(model)
    torch.manual_seed(0)
    replace_self_attention(model.decoder, name, [0, 1], {})
    return task, model.eval()


@pytest.mark.parametrize("name", INCREMENTAL)
def test_incremental_equals_full_sequence(build_lm, dict_dir, name):
    task, model = _with_mechanism(build_lm, dict_dir, name)
    tokens = _tokens(task, 2, 10, seed=1)
    with torch.no_grad():
        full = _full_log_probs(model, tokens)
        steps = _incremental_log_probs(model, tokens)
    assert full.shape == steps.shape
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(full[:, 0], full[:, -1])  # the log-probs depend on the context


def test_plugin_options_build_the_same_model(build_lm, dict_dir):
    """--core-attention NAME --core-attention-layers all gives the layers the swap above gives."""
    _, model, _ = build_lm(dict_dir, "core_attention_lm", "--core-attention", "linear", "--core-attention-layers", "all")
    assert [layer.self_attn.name for layer in model.decoder.layers] == ["linear", "linear"]


def test_primal_plus_decodes_from_running_sums(build_lm, dict_dir):
    torch.manual_seed(0)
    task, model, _ = build_lm(dict_dir, "transformer_lm_primal")
    model.eval()
    attn = model.decoder.layers[-1].self_attn
    assert attn.name == "primal" and attn.attention.low_rank == 30
    assert all(type(layer.self_attn).__name__ == "MultiheadAttention" for layer in model.decoder.layers[:-1])
    tokens = _tokens(task, 2, 10, seed=2)
    state: dict = {}
    with torch.no_grad():
        full = _full_log_probs(model, tokens)
        steps = _incremental_log_probs(model, tokens, state)
    buffer = attn._get_input_buffer(state)["core_attn_state"]
    assert set(buffer) == {"q_sum", "k_sum", "count"} and buffer["count"] == tokens.shape[1]
    assert buffer["q_sum"].shape == (2, 2, 16)  # (B, H, p): O(1) memory in the sequence length
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", CAUSAL)
def test_future_tokens_do_not_change_the_past(build_lm, dict_dir, name):
    task, model = _with_mechanism(build_lm, dict_dir, name)
    vocab = len(task.target_dictionary)
    tokens = _tokens(task, 2, 12, seed=3)
    changed = tokens.clone()
    changed[:, 7:] = (changed[:, 7:] + 5 - 4) % (vocab - 4) + 4
    with torch.no_grad():
        a, b = _full_log_probs(model, tokens), _full_log_probs(model, changed)
    torch.testing.assert_close(a[:, :7], b[:, :7])
    assert not torch.allclose(a[:, 7:], b[:, 7:])


def test_beam_search_reorders_the_state(build_lm, dict_dir):
    """Hypotheses found by beam search score the same when the whole sequence is rescored."""
    torch.manual_seed(0)
    task, model, _ = build_lm(dict_dir, "transformer_lm_primal")
    model.eval()
    dictionary = task.target_dictionary
    generator = SequenceGenerator([model], dictionary, beam_size=4, max_len_b=9, min_len=9)
    prefix = torch.full((2, 1), dictionary.eos())
    sample = {"net_input": {"src_tokens": prefix, "src_lengths": torch.ones(2, dtype=torch.long)}}
    with torch.no_grad():
        hypotheses = generator.generate([model], sample)
        for beams in hypotheses:
            for hypo in beams[:2]:
                target = hypo["tokens"][None]
                inputs = torch.cat([torch.tensor([[dictionary.eos()]]), target[:, :-1]], dim=1)
                rescored = _full_log_probs(model, inputs).gather(-1, target[..., None])[0, :, 0]
                torch.testing.assert_close(rescored, hypo["positional_scores"], rtol=1e-4, atol=1e-4)


def test_padding_and_layout(build_lm, dict_dir):
    torch.manual_seed(0)
    _, model, _ = build_lm(dict_dir, "transformer_lm_primal")
    model.eval()
    pad = model.decoder.dictionary.pad()
    tokens = torch.randint(4, len(model.decoder.dictionary), (2, 9), generator=torch.Generator().manual_seed(4))
    padded = tokens.clone()
    padded[1, 6:] = pad
    with torch.no_grad():
        a, b = _full_log_probs(model, tokens), _full_log_probs(model, padded)
    torch.testing.assert_close(b[1, :6], a[1, :6])  # right padding never changes real tokens
    torch.testing.assert_close(b[0], a[0])


def test_adapter_refuses_what_it_cannot_honour(build_lm, dict_dir):
    _, model, _ = build_lm(dict_dir, "transformer_lm_primal")
    attn = model.decoder.layers[-1].self_attn
    x = torch.randn(5, 2, 32)
    with pytest.raises(ValueError, match="full-context"):
        attn(x, x, x, attn_mask=None)
    with pytest.raises(ValueError, match="future mask"):
        attn(x, x, x, attn_mask=torch.zeros(5, 5))
    with pytest.raises(ValueError, match="self-attention"):
        attn(x, torch.randn(5, 2, 32), x, attn_mask=torch.zeros(5, 5))
    step = x[:1]
    with pytest.raises(ValueError, match="padding token"):
        attn(step, step, step, key_padding_mask=torch.tensor([[False], [True]]), incremental_state={})
