"""Tests for the training examples, their sampler and TokenRecDataCollator."""

from __future__ import annotations

import numpy as np
import pytest

from tokenrec_hf.data.interaction_data import InteractionData
from tokenrec_hf.data_collator import (
    EpochSeededRandomSampler,
    TokenRecEvaluationDataset,
    TokenRecTrainingDataset,
    example_seed,
    sample_negatives,
)


def make_tiny_split(num_users: int = 6, num_items: int = 20, seed: int = 0) -> InteractionData:
    """A leave-one-out split whose users have 3 to 8 training items, with distinct validation and test targets."""
    rng = np.random.default_rng(seed)
    train, valid, test = [], [], []
    for user in range(num_users):
        length = 3 + user % 6 + 2
        items = rng.choice(num_items, size=length, replace=False).tolist()
        train.append(items[:-2])
        valid.append(items[-2])
        test.append(items[-1])
    return InteractionData(
        name="tiny",
        user_ids=[f"u{user}" for user in range(num_users)],
        item_ids=[f"i{item}" for item in range(num_items)],
        train=train,
        valid=valid,
        test=test,
    )


# ---- negatives ----


def test_negatives_avoid_excluded_items():
    excluded = set(range(0, 20, 2))
    rng = np.random.default_rng(0)
    for _ in range(50):
        negatives = sample_negatives(20, excluded, 3, rng)
        assert len(negatives) == 3
        assert not set(negatives) & excluded
        assert len(set(negatives)) == 3


def test_negatives_use_complement_when_catalog_mostly_excluded():
    excluded = set(range(18))
    negatives = sample_negatives(20, excluded, 2, np.random.default_rng(1))
    assert sorted(negatives) == [18, 19]


def test_negatives_repeat_when_too_few_items_left():
    negatives = sample_negatives(5, [0, 1, 2, 3], 3, np.random.default_rng(2))
    assert negatives == [4, 4, 4]


def test_negatives_reject_full_history():
    with pytest.raises(ValueError, match="cover all 4 items"):
        sample_negatives(4, [0, 1, 2, 3], 1, np.random.default_rng(0))


def test_negatives_deterministic_for_seed():
    first = sample_negatives(1000, [1, 2, 3], 5, np.random.default_rng(example_seed(7, 1, 2)))
    second = sample_negatives(1000, [1, 2, 3], 5, np.random.default_rng(example_seed(7, 1, 2)))
    other = sample_negatives(1000, [1, 2, 3], 5, np.random.default_rng(example_seed(7, 1, 3)))
    assert first == second
    assert first != other


# ---- sampler ----


def test_sampler_permutes_per_epoch():
    sampler = EpochSeededRandomSampler(10, seed=3)
    epoch_zero = list(sampler)
    sampler.set_epoch(1)
    epoch_one = list(sampler)

    assert sorted(index for _, index in epoch_zero) == list(range(10))
    assert {epoch for epoch, _ in epoch_zero} == {0}
    assert {epoch for epoch, _ in epoch_one} == {1}
    assert [index for _, index in epoch_zero] != [index for _, index in epoch_one]

    sampler.set_epoch(0)
    assert list(sampler) == epoch_zero


def test_sampler_sequential_when_not_shuffled():
    sampler = EpochSeededRandomSampler(4, seed=3, shuffle=False)
    sampler.set_epoch(2)
    assert list(sampler) == [(2, 0), (2, 1), (2, 2), (2, 3)]


# ---- training examples ----


def test_one_per_user_uses_training_items_only():
    data = make_tiny_split()
    dataset = TokenRecTrainingDataset(data, "one_per_user", seed=0)
    assert len(dataset) == data.num_users

    for epoch in range(5):
        for index in range(len(dataset)):
            example = dataset[(epoch, index)]
            user = example["user_index"]
            assert example["target"] in data.train[user]
            assert example["target"] not in example["history"]
            assert sorted([*example["history"], example["target"]]) == sorted(data.train[user])
            assert data.valid[user] not in example["history"]
            assert data.test[user] not in example["history"]


def test_one_per_user_redraws_target_each_epoch():
    data = make_tiny_split(num_users=8)
    dataset = TokenRecTrainingDataset(data, "one_per_user", seed=0)
    targets_by_epoch = [[dataset[(epoch, index)]["target"] for index in range(len(dataset))] for epoch in range(4)]
    assert len({tuple(targets) for targets in targets_by_epoch}) > 1


def test_training_examples_deterministic():
    data = make_tiny_split()
    first = TokenRecTrainingDataset(data, "one_per_user", seed=5)
    second = TokenRecTrainingDataset(data, "one_per_user", seed=5)
    other_seed = TokenRecTrainingDataset(data, "one_per_user", seed=6)
    keys = [(epoch, index) for epoch in range(3) for index in range(len(first))]

    assert [first[key] for key in keys] == [second[key] for key in keys]
    assert [first[key]["seed"] for key in keys] != [other_seed[key]["seed"] for key in keys]


def test_integer_keys_follow_set_epoch():
    dataset = TokenRecTrainingDataset(make_tiny_split(), "one_per_user", seed=5)
    dataset.set_epoch(3)
    assert dataset[2] == dataset[(3, 2)]


def test_all_items_covers_every_interaction_once():
    data = make_tiny_split()
    dataset = TokenRecTrainingDataset(data, "all_items", seed=0)
    assert len(dataset) == sum(len(items) for items in data.train)

    pairs = sorted((dataset[index]["user_index"], dataset[index]["target"]) for index in range(len(dataset)))
    expected = sorted((user, item) for user, items in enumerate(data.train) for item in items)
    assert pairs == expected
    for index in range(len(dataset)):
        example = dataset[index]
        assert example["target"] not in example["history"]
        assert len(example["history"]) == len(data.train[example["user_index"]]) - 1


def test_training_examples_skip_unseen_users():
    data = make_tiny_split()
    data.unseen_users = [1, 4]
    dataset = TokenRecTrainingDataset(data, "one_per_user")
    assert sorted(dataset[index]["user_index"] for index in range(len(dataset))) == [0, 2, 3, 5]


def test_training_examples_reject_bad_input():
    data = make_tiny_split()
    with pytest.raises(ValueError, match="example_sampling='prefix' is not supported"):
        TokenRecTrainingDataset(data, "prefix")
    with pytest.raises(ValueError, match="User index 99 is outside"):
        TokenRecTrainingDataset(data, users=[99])
    with pytest.raises(IndexError, match="out of range"):
        TokenRecTrainingDataset(data)[(0, 100)]


# ---- evaluation rows ----


def test_evaluation_rows_follow_protocol():
    data = make_tiny_split()
    valid_rows = TokenRecEvaluationDataset(data, "valid")
    test_rows = TokenRecEvaluationDataset(data, "test")
    for user in range(data.num_users):
        assert valid_rows[user]["history"] == data.train[user]
        assert valid_rows[user]["target"] == data.valid[user]
        assert test_rows[user]["history"] == [*data.train[user], data.valid[user]]
        assert test_rows[user]["target"] == data.test[user]
    with pytest.raises(ValueError, match="stage='train' is not supported"):
        TokenRecEvaluationDataset(data, "train")
