"""The shared LRA model: masks, schedules, primal options, the dual encoder and KSVD collection."""

import itertools

import numpy as np
import pytest
import torch

import core
from lra.config import apply_overrides, load_config, model_sequence_length, primal_settings
from lra.data.arrays import Collate, LRADataset, Split
from lra.model import build_model
from lra.trainer import training_batches


def token_batch(batch=3, length=32, vocab=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab, (batch, length), generator=generator)
    mask = torch.ones(batch, length, dtype=torch.bool)
    mask[0, 20:] = False
    mask[1, 9:] = False
    return {"input_ids": ids * mask, "mask": mask}


@pytest.mark.parametrize("attention", ["primalformer", "primal+trans", "softmax", "linear"])
def test_padding_content_never_changes_the_output(attention):
    torch.manual_seed(0)
    model, _, _ = build_model(load_config("listops"), attention, 32)
    model.eval()
    batch = token_batch()
    changed = dict(batch, input_ids=torch.where(batch["mask"], batch["input_ids"], torch.full_like(batch["input_ids"], 7)))
    with torch.no_grad():
        torch.testing.assert_close(model(batch), model(changed), rtol=1e-5, atol=1e-5)
    core.ksvd_loss(model)


def test_real_tokens_do_change_the_output():
    torch.manual_seed(0)
    model, _, _ = build_model(load_config("listops"), "primalformer", 32)
    model.eval()
    batch = token_batch()
    changed = dict(batch, input_ids=batch["input_ids"].clone())
    changed["input_ids"][0, 3] = changed["input_ids"][0, 3] % 15 + 1
    with torch.no_grad():
        out, other = model(batch), model(changed)
    assert not torch.allclose(out[0], other[0])
    torch.testing.assert_close(out[2], other[2])


def test_trimmed_and_padded_batches_agree():
    torch.manual_seed(1)
    model, _, _ = build_model(load_config("listops"), "primalformer", 64)
    model.eval()
    split = Split(
        {
            "input_ids": np.array([[3, 4, 5, 0, 0], [6, 7, 0, 0, 0]], dtype=np.int16),
            "lengths": np.array([3, 2], dtype=np.int32),
            "labels": np.array([1, 2]),
        },
        {"kind": "tokens"},
    )
    items = [LRADataset(split)[i] for i in range(2)]
    padded, trimmed = Collate(pad_to=64)(items), Collate(trim=True)(items)
    assert padded["input_ids"].shape == (2, 64) and trimmed["input_ids"].shape == (2, 3)
    with torch.no_grad():
        torch.testing.assert_close(model(padded), model(trimmed), rtol=1e-5, atol=1e-5)


def test_schedules_and_primal_options_follow_the_paper_table():
    config = load_config("listops")
    model, eta, schedule = build_model(config, "primal+trans", 2048)
    assert schedule == ["softmax", "primal"] and eta == 0.05
    primal = model.encoder.layers[1].attention
    assert primal.low_rank == 30 and primal.ksvd_reduction == "batch" and primal.num_samples == 300
    assert model.encoder.layers[0].attention.attention_dropout == 0.1
    model, eta, schedule = build_model(config, "primalformer", 2048)
    assert schedule == ["primal", "primal"] and eta == 0.1
    assert all(layer.attention.low_rank == 20 for layer in model.encoder.layers)
    assert primal_settings(load_config("retrieval"), "primal")[1] == 0.0
    _, eta, schedule = build_model(config, "linear", 64)
    assert schedule == ["linear", "linear"] and eta == 0.0


def test_unknown_mechanism_is_refused_by_the_registry():
    with pytest.raises(KeyError, match="unknown attention"):
        build_model(load_config("listops"), "no-such-attention", 64)


def test_extra_options_reach_the_chosen_mechanism():
    model, _, _ = build_model(load_config("listops"), "primal+trans", 64, {"rank_multi": 2})
    assert model.encoder.layers[1].attention.num_samples == 60  # s = 30 times rank_multi = 2


def test_dual_encoder_shares_weights_and_collects_ksvd_once():
    torch.manual_seed(0)
    config = apply_overrides(load_config("retrieval"), ["primal.primalformer.eta=0.1"])
    model, eta, _ = build_model(config, "primalformer", 32)
    assert eta == 0.1
    first, second = token_batch(seed=1), token_batch(seed=2)
    batch = {**first, "input_ids_1": second["input_ids"], "mask_1": second["mask"]}
    logits = model(batch)
    assert logits.shape == (3, 2)
    ksvd = core.ksvd_loss(model)
    assert ksvd.item() > 0 and ksvd.requires_grad
    assert core.ksvd_loss(model).item() == 0.0  # consumed by the first call
    swapped = {
        "input_ids": second["input_ids"],
        "mask": second["mask"],
        "input_ids_1": first["input_ids"],
        "mask_1": first["mask"],
    }
    model.eval()
    with torch.no_grad():
        assert not torch.allclose(model(batch), model(swapped))  # [x0, x1, x0*x1, x0-x1] is ordered


def test_adding_model_reads_continuous_inputs():
    model, _, _ = build_model(load_config("adding"), "linear", 128)
    inputs = torch.randn(2, 128, 2)
    assert model({"inputs": inputs, "mask": torch.ones(2, 128, dtype=torch.bool)}).shape == (2, 1)


def test_pixels_are_shifted_or_masked_like_the_reference():
    split = Split({"pixels": np.array([[0, 5, 255]], dtype=np.uint8), "labels": np.array([1])}, {"kind": "pixels"})
    ours, reference = LRADataset(split)[0], LRADataset(split, reference_pixel_mask=True)[0]
    assert ours["input_ids"].tolist() == [1, 6, 256] and ours["mask"].all()
    assert reference["input_ids"].tolist() == [0, 5, 255] and reference["mask"].tolist() == [False, True, True]


def test_model_length_rounds_up_to_a_power_of_two():
    assert [model_sequence_length(n) for n in (2000, 4000, 1024, 511)] == [2048, 4096, 1024, 512]


def labelled_split(size):
    ids = np.arange(1, size + 1, dtype=np.int16)[:, None].repeat(2, axis=1)
    arrays = {"input_ids": ids, "lengths": np.full(size, 2), "labels": np.arange(size)}
    return LRADataset(Split(arrays, {"kind": "tokens", "max_length": 2}))


def test_training_batches_resume_exactly():
    dataset, collate = labelled_split(10), Collate()

    def labels(consumed, count):
        batches = training_batches(dataset, 3, seed=4, collate=collate, consumed=consumed)
        return [batch["labels"].tolist() for batch in itertools.islice(batches, count)]

    full = labels(0, 8)
    assert labels(5, 3) == full[5:8]
    assert len(set(sum(full[:3], []))) == 9  # one epoch never repeats an example
    assert full[:3] != full[3:6]  # each epoch is reshuffled
    with pytest.raises(ValueError, match="fewer than one batch"):
        next(training_batches(labelled_split(2), 3, seed=0, collate=collate))
