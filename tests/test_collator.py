"""Tests for the training examples, their sampler and TokenRecDataCollator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scripts.tiny_setup import make_tiny_split, make_tiny_tokenizer

from tokenrec_hf.data_collator import (
    EpochSeededRandomSampler,
    TokenRecDataCollator,
    TokenRecEvaluationDataset,
    TokenRecTrainingDataset,
    example_seed,
    sample_negatives,
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


def test_sampler_groups_by_length():
    lengths = [(index * 7) % 23 for index in range(40)]
    sampler = EpochSeededRandomSampler(40, seed=1, length_fn=lambda epoch: lengths, megabatch_size=10)
    order = [index for _, index in sampler]

    assert sorted(order) == list(range(40))
    for start in range(0, 40, 10):
        chunk = [lengths[index] for index in order[start : start + 10]]
        assert chunk == sorted(chunk, reverse=True)
    plain = [index for _, index in EpochSeededRandomSampler(40, seed=1)]
    assert [set(order[start : start + 10]) for start in range(0, 40, 10)] == [
        set(plain[start : start + 10]) for start in range(0, 40, 10)
    ]


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


# ---- collator with the real tokenizer ----


@pytest.fixture
def split():
    return make_tiny_split(num_users=8, num_items=30)


@pytest.fixture
def tokenizer(tiny_t5_tokenizer_dir, split):
    return make_tiny_tokenizer(tiny_t5_tokenizer_dir, split)


def collate_epoch(collator, dataset, epoch):
    return collator([dataset[(epoch, index)] for index in range(len(dataset))])


def test_collator_batch_shapes(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer, num_negatives=3)
    dataset = TokenRecTrainingDataset(split, seed=0)
    batch = collate_epoch(collator, dataset, 0)

    assert set(batch) == {"input_ids", "attention_mask", "positive_item_ids", "negative_item_ids"}
    assert batch["input_ids"].shape == batch["attention_mask"].shape
    assert batch["input_ids"].shape[0] == len(dataset)
    assert batch["positive_item_ids"].shape == (len(dataset),)
    assert batch["negative_item_ids"].shape == (len(dataset), 3)


def test_collator_pads_to_longest_prompt(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer)
    dataset = TokenRecTrainingDataset(split, seed=0)
    features = [dataset[(0, index)] for index in range(len(dataset))]
    batch = collator(features)

    lengths = batch["attention_mask"].sum(dim=1)
    assert batch["input_ids"].shape[1] == int(lengths.max())
    assert batch["input_ids"].shape[1] < 512
    assert int(lengths.min()) < int(lengths.max())
    assert (batch["input_ids"][batch["attention_mask"] == 0] == tokenizer.pad_token_id).all()


def test_collator_pads_to_multiple(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer, pad_to_multiple_of=8)
    batch = collate_epoch(collator, TokenRecTrainingDataset(split, seed=0), 0)
    longest = int(batch["attention_mask"].sum(dim=1).max())
    assert batch["input_ids"].shape[1] % 8 == 0
    assert batch["input_ids"].shape[1] - longest < 8


def test_collator_negatives_outside_training_items(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer, num_negatives=4)
    dataset = TokenRecTrainingDataset(split, seed=0)
    for epoch in range(3):
        features = [dataset[(epoch, index)] for index in range(len(dataset))]
        batch = collator(features)
        for row, feature in enumerate(features):
            negatives = set(batch["negative_item_ids"][row].tolist())
            assert not negatives & set(split.train[feature["user_index"]])
            assert batch["positive_item_ids"][row].item() == feature["target"]


def test_collator_prompt_has_no_target_or_heldout_items(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer)
    dataset = TokenRecTrainingDataset(split, seed=0)
    for epoch in range(4):
        features = [dataset[(epoch, index)] for index in range(len(dataset))]
        batch = collator(features)
        for row, feature in enumerate(features):
            text = tokenizer.decode(batch["input_ids"][row], skip_special_tokens=True)
            user = feature["user_index"]
            for forbidden in (feature["target"], split.valid[user], split.test[user]):
                assert tokenizer.item_token_string(forbidden) not in text
            assert tokenizer.user_token_string(user) in text


def test_collator_deterministic_for_seed(tokenizer, split):
    dataset = TokenRecTrainingDataset(split, seed=3)
    first = collate_epoch(TokenRecDataCollator(tokenizer), dataset, 1)
    second = collate_epoch(TokenRecDataCollator(tokenizer), dataset, 1)
    next_epoch = collate_epoch(TokenRecDataCollator(tokenizer), dataset, 2)
    for key in first:
        assert first[key].equal(second[key])
    assert not first["input_ids"].shape == next_epoch["input_ids"].shape or not first["input_ids"].equal(
        next_epoch["input_ids"]
    )


def test_collator_batch_split_matches_whole(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer, num_negatives=2)
    dataset = TokenRecTrainingDataset(split, seed=3)
    features = [dataset[(0, index)] for index in range(len(dataset))]
    whole = collator(features)
    halves = [collator(features[:4]), collator(features[4:])]

    assert torch.equal(torch.cat([half["negative_item_ids"] for half in halves]), whole["negative_item_ids"])
    for half, rows in zip(halves, (slice(0, 4), slice(4, None)), strict=True):
        width = half["input_ids"].shape[1]
        assert torch.equal(half["input_ids"], whole["input_ids"][rows, :width])


def test_collator_draws_several_templates(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer)
    dataset = TokenRecTrainingDataset(split, seed=0)
    prompts = set()
    for epoch in range(6):
        batch = collate_epoch(collator, dataset, epoch)
        prompts.update(tokenizer.decode(ids, skip_special_tokens=True).split("<")[0] for ids in batch["input_ids"])
    assert len(prompts) >= 3


def test_collator_never_uses_unseen_template(tokenizer, split):
    unseen_text = tokenizer.templates[tokenizer.unseen_template_id].split("{")[0].strip()
    collator = TokenRecDataCollator(tokenizer)
    dataset = TokenRecTrainingDataset(split, seed=0)
    for epoch in range(6):
        batch = collate_epoch(collator, dataset, epoch)
        for ids in batch["input_ids"]:
            assert not tokenizer.decode(ids, skip_special_tokens=True).startswith(unseen_text)


def test_collator_truncates_to_recent_items(tokenizer):
    long_split = make_tiny_split(num_users=2, num_items=200)
    long_split.train[0] = list(range(150))
    long_tokenizer = make_tiny_tokenizer(tokenizer.base_tokenizer.name_or_path, long_split, codebook_size=6)
    history_template = long_tokenizer.history_template_ids[0]
    collator = TokenRecDataCollator(long_tokenizer, template_ids=[history_template], max_length=64)

    batch = collator([{"user_index": 0, "history": list(range(150)), "target": 160}])
    assert batch["attention_mask"].sum().item() <= 64
    text = long_tokenizer.decode(batch["input_ids"][0], skip_special_tokens=True)
    kept = [item for item in range(150) if long_tokenizer.item_token_string(item) in text]
    assert kept and min(kept) >= 150 - 64 // 3
    assert 149 in kept


def test_prompt_length_matches_tokenized_length(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer, max_length=64)
    dataset = TokenRecTrainingDataset(split, seed=0)
    for epoch in range(3):
        for index in range(len(dataset)):
            feature = dataset[(epoch, index)]
            batch = collator([feature])
            assert collator.prompt_length(feature) == batch["input_ids"].shape[1]
    empty = {"user_index": 1, "history": [], "target": 2, "seed": 5}
    assert collator.prompt_length(empty) == collator([empty])["input_ids"].shape[1]


def test_collator_empty_history_uses_user_only_template(tokenizer):
    collator = TokenRecDataCollator(tokenizer, template_ids=tokenizer.history_template_ids[:1])
    batch = collator([{"user_index": 0, "history": [], "target": 3}])
    assert batch["input_ids"].shape[0] == 1


def test_collator_without_targets_returns_prompts_only(tokenizer, split):
    collator = TokenRecDataCollator(tokenizer)
    rows = TokenRecEvaluationDataset(split, "valid").rows[:3]
    batch = collator([{"user_index": row["user_index"], "history": row["history"]} for row in rows])
    assert set(batch) == {"input_ids", "attention_mask"}


def test_collator_rejects_bad_input(tokenizer):
    collator = TokenRecDataCollator(tokenizer)
    with pytest.raises(ValueError, match="missing \\['history'\\]"):
        collator([{"user_index": 0}])
    with pytest.raises(ValueError, match="Target item index 999 of user 0 is outside"):
        collator([{"user_index": 0, "history": [1], "target": 999}])
    with pytest.raises(ValueError, match="empty batch"):
        collator([])
    with pytest.raises(ValueError, match="Template index 42 is out of range"):
        TokenRecDataCollator(tokenizer, template_ids=[42])
    with pytest.raises(ValueError, match="max_length=12 leaves no room"):
        TokenRecDataCollator(tokenizer, template_ids=tokenizer.history_template_ids[:1], max_length=12)(
            [{"user_index": 0, "history": [1, 2], "target": 3}]
        )
