"""Generators: every label is recomputed by an independent evaluator that sees only the model input."""

import random

import numpy as np
import pytest

from lra.data import listops, synthetic
from lra.data.connectivity import connectivity_label
from lra.data.pathfinder import PathfinderParams, generate_image


@pytest.mark.parametrize(
    "source, value",
    [
        ("( ( ( [MAX 2 ) 9 ) ] )", 9),
        ("[MIN 4 7 ]", 4),
        ("[MED 1 2 3 4 ]", 2),  # the median 2.5 truncates to 2, as int(np.median) in LRA
        ("[SM 9 8 7 ]", 4),
        ("[MAX 1 [MIN 5 3 ] [SM 4 4 ] 2 ]", 8),
        ("( ( ( ( [MED 3 ) ( ( ( [SM 5 ) 6 ) ] ) ) 0 ) ] )", 1),
        ("7", 7),
    ],
)
def test_listops_evaluator_on_hand_computed_expressions(source, value):
    assert listops.evaluate_expression(source) == value


@pytest.mark.parametrize("source", ["[MAX 1 2", "[MIN ]", "]", "[FOO 1 ]", "1 2"])
def test_listops_evaluator_rejects_malformed_expressions(source):
    with pytest.raises(ValueError):
        listops.evaluate_expression(source)


def test_listops_generator_labels_lengths_and_uniqueness():
    examples = list(listops.generate_examples(300, seed=3, min_length=10, max_length=200))
    sources = [s for s, _ in examples]
    assert len(set(sources)) == len(sources) == 300
    for source, label in examples:
        assert listops.evaluate_expression(source) == label
        ids = listops.tokenize(source)
        assert 10 < len(ids) < 200  # LRA's length counts operators, "]" and digits, not parentheses
        assert (ids == listops.TOKEN_IDS["]"]).sum() == sum(source.split().count(op) for op in listops.OPERATORS)
    labels = np.array([label for _, label in examples])
    assert len(np.unique(labels)) >= 6


def test_listops_tree_string_is_left_nested_pairs():
    tree = listops.Tree("[MAX", [listops.Tree(digit=2), listops.Tree(digit=9)])
    assert tree.to_string() == "( ( ( [MAX 2 ) 9 ) ] )"
    assert tree.length == 4 and tree.value() == 9


def test_listops_generator_respects_lra_depth_and_argument_bounds():
    rng = random.Random(0)

    def check(node, depth):
        assert depth <= 10
        if node.operator is not None:
            assert 2 <= len(node.children) <= 10
            for child in node.children:
                check(child, depth + 1)

    for _ in range(200):
        check(listops.generate_tree(rng), 1)


def test_listops_tokenizer_keeps_or_drops_brackets():
    source = "( ( ( [MAX 2 ) 9 ) ] )"
    kept = listops.tokenize(source)
    dropped = listops.tokenize(source, drop_brackets=True)
    ids = listops.TOKEN_IDS
    assert kept.tolist() == [ids["[MAX"], ids["2"], ids["9"], ids["]"]]
    assert dropped.tolist() == [ids["[MAX"], ids["2"], ids["9"]]


@pytest.mark.parametrize("length", [128, 1024])
def test_adding_targets_match_a_scan_of_the_input(length):
    data = synthetic.generate_adding(50, length, seed=1)
    assert data["values"].shape == (50, length)
    assert (data["values"] > -1).all() and (data["values"] <= 1).all()
    assert (data["positions"][:, 0] < data["positions"][:, 1]).all()
    assert (data["targets"] >= 0).all() and (data["targets"] <= 1).all()
    for row in range(50):
        inputs = np.zeros((length, 2), dtype=np.float32)
        inputs[:, 0] = data["values"][row]
        inputs[data["positions"][row], 1] = 1.0
        assert synthetic.adding_target_from_input(inputs) == pytest.approx(float(data["targets"][row]), abs=1e-6)


def test_temporal_order_labels_match_a_scan_and_cover_all_classes():
    data = synthetic.generate_temporal_order(200, 256, seed=2)
    assert data["input_ids"].min() >= 1 and data["input_ids"].max() <= synthetic.ORDER_VOCAB
    for ids, label in zip(data["input_ids"], data["labels"]):
        assert synthetic.temporal_order_label_from_tokens(ids) == label
    assert set(data["labels"].tolist()) == {0, 1, 2, 3}


def test_positions_are_distinct_and_uniform():
    positions = synthetic.two_sorted_positions(np.random.default_rng(0), 20000, 128)
    assert (positions[:, 0] != positions[:, 1]).all()
    counts = np.bincount(positions.ravel(), minlength=128)
    assert counts.min() > 0.7 * counts.mean()


@pytest.mark.parametrize("length", [100, 64, 2**15])
def test_synthetic_lengths_are_powers_of_two_in_psf_range(length):
    with pytest.raises(ValueError, match="power of two"):
        synthetic.generate_adding(2, length)


def test_pathfinder_labels_agree_with_connectivity():
    rng = np.random.default_rng(5)
    labels = []
    for _ in range(30):
        image, label = generate_image(rng)
        assert image.shape == (32, 32) and image.dtype == np.uint8
        assert connectivity_label(image) == label
        labels.append(label)
    assert 0 < sum(labels) < 30


def test_pathfinder_contours_are_dashed_not_pixel_connected():
    from scipy import ndimage

    rng = np.random.default_rng(6)
    image, _ = generate_image(rng, PathfinderParams(contour_length=9))
    _, pieces = ndimage.label(image > 0, structure=np.ones((3, 3)))
    assert pieces > 9  # paddles are separated by background pixels


def test_connectivity_check_catches_a_wrong_marker():
    image = np.zeros((32, 32), dtype=np.uint8)
    image[10, 5:20:3] = 150
    image[10, 6:21:3] = 150  # a dashed horizontal line with one-pixel gaps
    image[9:12, 4:7] = 255
    image[9:12, 18:21] = 255
    assert connectivity_label(image) == 1
    image[9:12, 18:21] = 0
    image[20:23, 18:21] = 255  # the second marker is off the line
    assert connectivity_label(image) == 0


def test_adding_curriculum_stages_may_be_shorter_than_psf_sizes():
    arrays = synthetic.generate_adding(8, 16, seed=0, min_log2=synthetic.CURRICULUM_MIN_LOG2)
    assert arrays["values"].shape == (8, 16)
    with pytest.raises(ValueError, match="power of two from 16"):
        synthetic.generate_adding(8, 8, min_log2=0)  # never below the curriculum floor
    with pytest.raises(ValueError, match="power of two from 128"):
        synthetic.generate_adding(8, 16)
