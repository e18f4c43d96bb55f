"""Tests for TokenRecTokenizer: ID tokens, code tables, prompts, new entities, saving and loading."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoConfig, AutoTokenizer, PreTrainedConfig

from tokenrec_hf.prompts import DEFAULT_TEMPLATES
from tokenrec_hf.quantization import MQTokenizer, MQTokenizerConfig
from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer
from tokenrec_hf.utils import HubUnreachableError

INPUT_DIM = 8
USER_K, USER_L = 3, 16
ITEM_K, ITEM_L = 3, 32
NUM_USERS, NUM_ITEMS = 6, 40
LOWERCASE_TEMPLATE = "the user {user} has interacted with {history} before. what would they like next?"


def _tiny_quantizer(num_codebooks: int, codebook_size: int, seed: int) -> MQTokenizer:
    torch.manual_seed(seed)
    config = MQTokenizerConfig(
        input_dim=INPUT_DIM,
        num_codebooks=num_codebooks,
        codebook_size=codebook_size,
        codebook_dim=4,
        encoder_hidden_sizes=[8],
        decoder_hidden_sizes=[8],
    )
    return MQTokenizer(config).eval()


def _unique_codes(count: int, num_codebooks: int, codebook_size: int) -> torch.LongTensor:
    """Codes where entity i gets the base-L digits of i, so no two entities share a token string."""
    rows = [[(index // codebook_size**k) % codebook_size for k in range(num_codebooks)] for index in range(count)]
    return torch.tensor(rows, dtype=torch.long)


def _id_token_ids(tokenizer: TokenRecTokenizer) -> set[int]:
    return set(tokenizer.user_token_ids.flatten().tolist()) | set(tokenizer.item_token_ids.flatten().tolist())


def _stray_pieces_next_to_id_tokens(tokenizer: TokenRecTokenizer, ids: list[int]) -> list[int]:
    """Positions of bare '▁' pieces next to an ID token, found from the token strings (not the tokenizer's helper)."""
    tokens = tokenizer.convert_ids_to_tokens(ids)
    id_tokens = {tokenizer.convert_ids_to_tokens(token_id) for token_id in _id_token_ids(tokenizer)}
    positions = []
    for position, token in enumerate(tokens):
        neighbours = tokens[max(position - 1, 0) : position] + tokens[position + 1 : position + 2]
        if token == "▁" and any(neighbour in id_tokens for neighbour in neighbours):
            positions.append(position)
    return positions


@pytest.fixture
def table_tokenizer(tiny_t5_tokenizer_dir) -> TokenRecTokenizer:
    """A tokenizer with explicit, collision-free code tables and no quantizers."""
    return TokenRecTokenizer(
        tiny_t5_tokenizer_dir,
        num_user_codebooks=USER_K,
        user_codebook_size=USER_L,
        num_item_codebooks=ITEM_K,
        item_codebook_size=ITEM_L,
        user_codes=_unique_codes(NUM_USERS, USER_K, USER_L),
        item_codes=_unique_codes(NUM_ITEMS, ITEM_K, ITEM_L),
        user_ids=[f"user_{index}" for index in range(NUM_USERS)],
        item_ids=[f"item_{index}" for index in range(NUM_ITEMS)],
    )


@pytest.fixture
def quantized_tokenizer(tiny_t5_tokenizer_dir) -> TokenRecTokenizer:
    """A tokenizer built from two real (untrained) MQ-Tokenizers."""
    generator = torch.Generator().manual_seed(0)
    return TokenRecTokenizer.from_quantizers(
        tiny_t5_tokenizer_dir,
        _tiny_quantizer(USER_K, USER_L, seed=1),
        _tiny_quantizer(ITEM_K, ITEM_L, seed=2),
        torch.randn(NUM_USERS, INPUT_DIM, generator=generator),
        torch.randn(NUM_ITEMS, INPUT_DIM, generator=generator),
        user_ids=[f"user_{index}" for index in range(NUM_USERS)],
        item_ids=[f"item_{index}" for index in range(NUM_ITEMS)],
    )


# ID tokens.


def test_id_tokens_added_once_each(table_tokenizer, tiny_t5_tokenizer_dir):
    base_size = len(AutoTokenizer.from_pretrained(tiny_t5_tokenizer_dir))
    assert len(table_tokenizer) == base_size + USER_K * USER_L + ITEM_K * ITEM_L
    assert table_tokenizer.user_token_ids.shape == (USER_K, USER_L)
    assert table_tokenizer.item_token_ids.shape == (ITEM_K, ITEM_L)
    all_ids = torch.cat([table_tokenizer.user_token_ids.flatten(), table_tokenizer.item_token_ids.flatten()])
    assert all_ids.unique().numel() == all_ids.numel()
    assert int(all_ids.min()) >= base_size


def test_id_token_names_encode_to_one_id(table_tokenizer):
    for k in range(USER_K):
        for codeword in (0, 1, 10, USER_L - 1):
            name = f"<u{k + 1}-{codeword}>"
            ids = table_tokenizer(name, add_special_tokens=False, return_tensors=None)["input_ids"]
            assert ids == [int(table_tokenizer.user_token_ids[k, codeword])]
    for k in range(ITEM_K):
        name = f"<v{k + 1}-{ITEM_L - 1}>"
        ids = table_tokenizer(name, add_special_tokens=False, return_tensors=None)["input_ids"]
        assert ids == [int(table_tokenizer.item_token_ids[k, ITEM_L - 1])]


def test_two_digit_codeword_not_split(table_tokenizer):
    ids = table_tokenizer("<u1-10><u1-1>", add_special_tokens=False, return_tensors=None)["input_ids"]
    assert ids == [int(table_tokenizer.user_token_ids[0, 10]), int(table_tokenizer.user_token_ids[0, 1])]


def test_id_tokens_survive_decode(table_tokenizer):
    # Words from the tiny vocabulary only, because decoding drops the unknown pieces of other words.
    prompt = table_tokenizer.build_prompt("user_2", ["item_3", "item_4"], template=LOWERCASE_TEMPLATE, rng=0)
    ids = table_tokenizer(prompt, return_tensors=None)["input_ids"]
    assert table_tokenizer.base_tokenizer.unk_token_id not in ids
    text = table_tokenizer.decode(ids, skip_special_tokens=True)
    assert table_tokenizer.user_token_string("user_2") in text
    assert table_tokenizer(text, return_tensors=None)["input_ids"] == ids


def test_added_token_flags_in_saved_file(table_tokenizer, tmp_path):
    table_tokenizer.save_pretrained(tmp_path)
    added = json.loads((tmp_path / "tokenizer.json").read_text())["added_tokens"]
    by_name = {entry["content"]: entry for entry in added}
    entry = by_name["<v2-7>"]
    assert entry["normalized"] is False
    assert entry["special"] is False
    assert entry["lstrip"] is False
    assert entry["rstrip"] is False


def test_different_k_and_l_per_side(tiny_t5_tokenizer_dir):
    tokenizer = TokenRecTokenizer(
        tiny_t5_tokenizer_dir,
        num_user_codebooks=2,
        user_codebook_size=5,
        num_item_codebooks=4,
        item_codebook_size=3,
        user_codes=torch.tensor([[4, 0]]),
        item_codes=torch.tensor([[2, 1, 0, 2]]),
    )
    assert tokenizer.user_token_ids.shape == (2, 5)
    assert tokenizer.item_token_ids.shape == (4, 3)
    assert tokenizer.user_token_string(0) == "<u1-4><u2-0>"
    assert tokenizer.item_token_string("0") == "<v1-2><v2-1><v3-0><v4-2>"
    assert len(tokenizer) == len(AutoTokenizer.from_pretrained(tiny_t5_tokenizer_dir)) + 2 * 5 + 4 * 3


# Stray '▁' pieces.


def test_punctuation_after_id_token_strays(table_tokenizer):
    # The failure the templates avoid: a comma right after an ID token encodes as '▁' + ','.
    text = "items: <u1-0><u1-1><u1-2>, <u1-2>..."
    ids = table_tokenizer(text, add_special_tokens=False, return_tensors=None)["input_ids"]
    assert _stray_pieces_next_to_id_tokens(table_tokenizer, ids)
    assert table_tokenizer.stray_space_positions(text)


def _check_templates_have_no_stray_pieces(tokenizer: TokenRecTokenizer) -> None:
    history = [f"item_{index}" for index in range(12)]
    for template_id in range(len(tokenizer.templates)):
        prompt = tokenizer.build_prompt("user_1", history, template=template_id, rng=template_id)
        ids = tokenizer(prompt, return_tensors=None)["input_ids"]
        assert _stray_pieces_next_to_id_tokens(tokenizer, ids) == [], (
            template_id,
            tokenizer.convert_ids_to_tokens(ids),
        )
        assert tokenizer.stray_space_positions(ids) == []


def test_templates_no_stray_tiny_vocab(table_tokenizer):
    _check_templates_have_no_stray_pieces(table_tokenizer)


@pytest.mark.shared_data
def test_templates_no_stray_t5_small(t5_small_dir):
    tokenizer = TokenRecTokenizer(
        t5_small_dir,
        num_user_codebooks=USER_K,
        user_codebook_size=USER_L,
        num_item_codebooks=ITEM_K,
        item_codebook_size=ITEM_L,
        user_codes=_unique_codes(NUM_USERS, USER_K, USER_L),
        item_codes=_unique_codes(NUM_ITEMS, ITEM_K, ITEM_L),
        user_ids=[f"user_{index}" for index in range(NUM_USERS)],
        item_ids=[f"item_{index}" for index in range(NUM_ITEMS)],
    )
    assert len(tokenizer) == 32100 + USER_K * USER_L + ITEM_K * ITEM_L
    _check_templates_have_no_stray_pieces(tokenizer)
    # The whole prompt, not only the neighbours of ID tokens, is free of bare '▁' pieces with the real vocabulary.
    for template_id in range(len(tokenizer.templates)):
        prompt = tokenizer.build_prompt("user_0", ["item_1", "item_2"], template=template_id, rng=0)
        assert "▁" not in tokenizer.base_tokenizer.tokenize(prompt)


def test_template_with_stray_piece_warns(tiny_t5_tokenizer_dir, caplog):
    from transformers.utils import logging as hf_logging

    hf_logging.enable_propagation()
    try:
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            num_user_codebooks=2,
            user_codebook_size=4,
            num_item_codebooks=2,
            item_codebook_size=4,
            templates=["what will {user} zzzq next", "what will {user} like next"],
            unseen_template_id=None,
        )
    finally:
        hf_logging.disable_propagation()
    warnings = [record.message for record in caplog.records if "stray" in record.message]
    assert len(warnings) == 1
    assert "zzzq" in warnings[0]


# Prompts.


def test_prompt2_shape_k_tokens_each(table_tokenizer):
    history = ["item_5", "item_17", "item_33"]
    prompt = table_tokenizer.build_prompt("user_3", history, template=5, rng=0)
    ids = table_tokenizer(prompt, return_tensors=None)["input_ids"]

    user_ids = set(table_tokenizer.user_token_ids.flatten().tolist())
    item_ids = set(table_tokenizer.item_token_ids.flatten().tolist())
    user_positions = [position for position, token_id in enumerate(ids) if token_id in user_ids]
    item_positions = [position for position, token_id in enumerate(ids) if token_id in item_ids]
    assert len(user_positions) == 3
    assert user_positions == list(range(user_positions[0], user_positions[0] + 3))
    assert len(item_positions) == 9

    expected_items = {table_tokenizer.item_token_string(item) for item in history}
    item_tokens = table_tokenizer.convert_ids_to_tokens([ids[position] for position in item_positions])
    groups = {"".join(item_tokens[start : start + 3]) for start in range(0, 9, 3)}
    assert groups == expected_items
    assert "".join(table_tokenizer.convert_ids_to_tokens([ids[p] for p in user_positions])) == (
        table_tokenizer.user_token_string("user_3")
    )


def test_prompt1_shape_user_tokens_only(table_tokenizer):
    prompt = table_tokenizer.build_prompt("user_1", ["item_1"], template=0)
    ids = table_tokenizer(prompt, return_tensors=None)["input_ids"]
    assert (
        len([token_id for token_id in ids if token_id in set(table_tokenizer.user_token_ids.flatten().tolist())]) == 3
    )
    assert not set(ids) & set(table_tokenizer.item_token_ids.flatten().tolist())


def test_history_truncated_to_most_recent(table_tokenizer):
    history = [f"item_{index}" for index in range(10)]
    prompt = table_tokenizer.build_prompt("user_0", history, template=5, rng=1, max_history_tokens=3 * ITEM_K + 2)
    kept = {item for item in history if table_tokenizer.item_token_string(item) in prompt}
    assert kept == {"item_7", "item_8", "item_9"}


def test_history_shuffle_is_seeded(table_tokenizer):
    history = list(range(12))
    prompts = [table_tokenizer.build_prompt(0, history, template=6, rng=seed) for seed in range(5)]
    assert prompts[0] == table_tokenizer.build_prompt(0, history, template=6, rng=0)
    in_order = table_tokenizer.build_prompt(0, history, template=6, shuffle=False)
    assert any(prompt != in_order for prompt in prompts)
    expected = " ".join(table_tokenizer.item_token_string(item) for item in history)
    assert expected in in_order


def test_random_template_never_unseen(table_tokenizer):
    unseen = table_tokenizer.templates[table_tokenizer.unseen_template_id]
    rng = random.Random(0)
    filled = {}
    for template_id, template in enumerate(table_tokenizer.templates):
        filled[table_tokenizer.build_prompt("user_1", ["item_2"], template=template)] = template_id
    drawn = {filled[table_tokenizer.build_prompt("user_1", ["item_2"], rng=rng)] for _ in range(300)}
    assert drawn == set(table_tokenizer.seen_template_ids)
    assert table_tokenizer.templates.index(unseen) not in drawn


def test_empty_history_uses_user_only_templates(table_tokenizer):
    user_only = {
        table_tokenizer.build_prompt(1, None, template=index) for index in table_tokenizer.user_only_template_ids
    }
    rng = random.Random(1)
    for _ in range(50):
        assert table_tokenizer.build_prompt(1, [], rng=rng) in user_only


def test_history_template_with_empty_history(table_tokenizer):
    with pytest.raises(ValueError, match="needs a history, but the history is empty"):
        table_tokenizer.build_prompt("user_1", [], template=5)


def test_history_budget_below_one_item(table_tokenizer):
    with pytest.raises(ValueError, match="max_history_tokens=2 is below the 3 ID tokens of one item"):
        table_tokenizer.build_prompt("user_1", ["item_1"], template=5, max_history_tokens=2)


def test_template_index_out_of_range(table_tokenizer):
    with pytest.raises(IndexError, match="Template index 11 is out of range"):
        table_tokenizer.build_prompt("user_1", ["item_1"], template=11)


def test_template_string_without_user(table_tokenizer):
    with pytest.raises(ValueError, match="'Items {history} are next' has no \\{user\\} placeholder"):
        table_tokenizer.build_prompt("user_1", ["item_1"], template="Items {history} are next")


def test_constructor_template_without_user(tiny_t5_tokenizer_dir):
    with pytest.raises(ValueError, match="'Recommend for them' has no \\{user\\} placeholder"):
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            num_user_codebooks=2,
            user_codebook_size=4,
            num_item_codebooks=2,
            item_codebook_size=4,
            templates=["What will {user} like", "Recommend for them"],
        )


def test_template_groups(table_tokenizer):
    assert table_tokenizer.templates == DEFAULT_TEMPLATES
    assert table_tokenizer.unseen_template_id == 10
    assert table_tokenizer.seen_template_ids == list(range(10))
    assert table_tokenizer.user_only_template_ids == [0, 1, 2, 3, 4]
    assert table_tokenizer.history_template_ids == [5, 6, 7, 8, 9, 10]


# Lookups.


def test_token_string_by_id_and_index(table_tokenizer):
    codes = table_tokenizer.user_codes[4].tolist()
    expected = "".join(f"<u{k + 1}-{code}>" for k, code in enumerate(codes))
    assert table_tokenizer.user_token_string("user_4") == expected
    assert table_tokenizer.user_token_string(4) == expected
    assert table_tokenizer.user_token_string(torch.tensor(4)) == expected
    assert table_tokenizer.item_token_string("item_33").startswith("<v1-1>")


def test_unknown_user_id(table_tokenizer):
    with pytest.raises(KeyError, match="Unknown user id 'user_99'.*add_users\\(embeddings, user_ids\\)"):
        table_tokenizer.user_token_string("user_99")
    with pytest.raises(KeyError, match="fold_in_users\\(\\[history\\]\\)"):
        table_tokenizer.build_prompt("user_99", ["item_1"])


def test_unknown_item_id(table_tokenizer):
    with pytest.raises(KeyError, match="Unknown item id 'item_x'.*add_items\\(embeddings, item_ids\\)"):
        table_tokenizer.build_prompt("user_1", ["item_1", "item_x"], template=5)


def test_index_out_of_range(table_tokenizer):
    with pytest.raises(IndexError, match="user index 6 is out of range: this tokenizer has 6 users"):
        table_tokenizer.user_token_string(6)
    with pytest.raises(IndexError, match="item index -1 is out of range"):
        table_tokenizer.item_token_string(-1)


# New users and items through the MQ-Tokenizers.


def test_from_quantizers_codes_match_encode(tiny_t5_tokenizer_dir):
    user_quantizer = _tiny_quantizer(2, 8, seed=3)
    item_quantizer = _tiny_quantizer(4, 6, seed=4)
    users = torch.randn(5, INPUT_DIM)
    items = torch.randn(9, INPUT_DIM)
    tokenizer = TokenRecTokenizer.from_quantizers(tiny_t5_tokenizer_dir, user_quantizer, item_quantizer, users, items)
    assert (tokenizer.num_user_codebooks, tokenizer.user_codebook_size) == (2, 8)
    assert (tokenizer.num_item_codebooks, tokenizer.item_codebook_size) == (4, 6)
    assert torch.equal(tokenizer.user_codes, user_quantizer.encode(users))
    assert torch.equal(tokenizer.item_codes, item_quantizer.encode(items))
    assert tokenizer.user_ids == ["0", "1", "2", "3", "4"]
    assert tokenizer.num_items == 9


def test_add_users_appends_codes(quantized_tokenizer):
    embeddings = torch.randn(3, INPUT_DIM)
    positions = quantized_tokenizer.add_users(embeddings, ["new_a", "new_b", "new_c"])
    assert positions.tolist() == [NUM_USERS, NUM_USERS + 1, NUM_USERS + 2]
    assert quantized_tokenizer.num_users == NUM_USERS + 3
    expected = quantized_tokenizer.user_quantizer.encode(embeddings)
    assert torch.equal(quantized_tokenizer.user_codes[NUM_USERS:], expected)
    tokens = "".join(f"<u{k + 1}-{code}>" for k, code in enumerate(expected[1].tolist()))
    assert quantized_tokenizer.user_token_string("new_b") == tokens


def test_add_items_then_prompt(quantized_tokenizer):
    quantized_tokenizer.add_items(torch.randn(2, INPUT_DIM), ["fresh_1", "fresh_2"])
    prompt = quantized_tokenizer.build_prompt("user_0", ["item_0", "fresh_2"], template=5, rng=0)
    assert quantized_tokenizer.item_token_string("fresh_2") in prompt


def test_add_existing_user_needs_overwrite(quantized_tokenizer):
    with pytest.raises(ValueError, match="\\['user_1'\\] already have codes. Pass overwrite=True"):
        quantized_tokenizer.add_users(torch.randn(1, INPUT_DIM), ["user_1"])
    embedding = torch.randn(1, INPUT_DIM)
    positions = quantized_tokenizer.add_users(embedding, ["user_1"], overwrite=True)
    assert positions.tolist() == [1]
    assert quantized_tokenizer.num_users == NUM_USERS
    assert torch.equal(quantized_tokenizer.user_codes[1], quantized_tokenizer.user_quantizer.encode(embedding)[0])


def test_add_users_ids_must_match_rows(quantized_tokenizer):
    with pytest.raises(ValueError, match="Got 2 user embeddings but 1 user_ids"):
        quantized_tokenizer.add_users(torch.randn(2, INPUT_DIM), ["only_one"])
    with pytest.raises(ValueError, match="contains 'twin' more than once"):
        quantized_tokenizer.add_users(torch.randn(2, INPUT_DIM), ["twin", "twin"])


def test_encode_new_users_does_not_add(quantized_tokenizer):
    embeddings = torch.randn(4, INPUT_DIM)
    strings = quantized_tokenizer.encode_new_users(embeddings)
    assert quantized_tokenizer.num_users == NUM_USERS
    codes = quantized_tokenizer.user_quantizer.encode(embeddings)
    assert strings == ["".join(f"<u{k + 1}-{c}>" for k, c in enumerate(row.tolist())) for row in codes]
    assert len(quantized_tokenizer.encode_new_items(torch.randn(2, INPUT_DIM))) == 2


def test_embeddings_wrong_dim(quantized_tokenizer):
    with pytest.raises(ValueError, match="Expected user embeddings of shape \\[N, 8\\].*got shape \\(2, 5\\)"):
        quantized_tokenizer.add_users(torch.randn(2, 5), ["a", "b"])
    with pytest.raises(ValueError, match="Expected item embeddings of shape \\[N, 8\\]"):
        quantized_tokenizer.encode_new_items(torch.randn(INPUT_DIM))
    with pytest.raises(ValueError, match="Expected user embeddings of shape \\[N, 8\\].*got shape \\(8,\\)"):
        quantized_tokenizer.add_users(torch.randn(INPUT_DIM), ["a"])


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf"), float("-inf")])
def test_embeddings_not_finite(quantized_tokenizer, bad_value):
    embeddings = torch.randn(3, INPUT_DIM)
    embeddings[2, 5] = bad_value
    with pytest.raises(ValueError, match=f"user embedding row 2 \\(id 'c'\\) has the value {bad_value} in column 5"):
        quantized_tokenizer.add_users(embeddings, ["a", "b", "c"])
    assert quantized_tokenizer.num_users == NUM_USERS


def test_from_quantizers_bad_embeddings(tiny_t5_tokenizer_dir):
    items = torch.randn(4, INPUT_DIM)
    items[1, 0] = float("nan")
    with pytest.raises(ValueError, match="item embedding row 1 \\(id '1'\\) has the value nan in column 0"):
        TokenRecTokenizer.from_quantizers(
            tiny_t5_tokenizer_dir, _tiny_quantizer(3, 4, 0), _tiny_quantizer(3, 4, 1), torch.randn(2, INPUT_DIM), items
        )


def test_no_quantizer_cannot_add(table_tokenizer):
    with pytest.raises(ValueError, match="no user MQ-Tokenizer, so it cannot tokenize new users"):
        table_tokenizer.add_users(torch.randn(1, INPUT_DIM), ["new"])
    with pytest.raises(ValueError, match="no item MQ-Tokenizer"):
        table_tokenizer.encode_new_items(torch.randn(1, INPUT_DIM))


# Invalid configurations.


def test_codes_outside_codebook(tiny_t5_tokenizer_dir):
    codes = torch.tensor([[0, 1, 2], [3, 16, 0]])
    with pytest.raises(ValueError, match="has code 16 at row 1, codebook 2, outside \\[0, 16\\)"):
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            user_quantizer=_tiny_quantizer(3, 16, 0),
            num_item_codebooks=3,
            item_codebook_size=4,
            user_codes=codes,
        )


def test_codes_wrong_k(tiny_t5_tokenizer_dir):
    with pytest.raises(ValueError, match="has shape \\(2, 2\\), but the user tokens use K=3 codebooks"):
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            user_quantizer=_tiny_quantizer(3, 16, 0),
            num_item_codebooks=3,
            item_codebook_size=4,
            user_codes=torch.zeros(2, 2, dtype=torch.long),
        )


def test_codes_must_be_integers(tiny_t5_tokenizer_dir):
    with pytest.raises(ValueError, match="must contain integers, got dtype torch.float32"):
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            num_user_codebooks=2,
            user_codebook_size=4,
            num_item_codebooks=2,
            item_codebook_size=4,
            item_codes=torch.zeros(3, 2),
        )


def test_quantizer_disagrees_with_k_and_l(tiny_t5_tokenizer_dir):
    with pytest.raises(
        ValueError, match="item MQ-Tokenizer has K=3 codebooks of L=16 codewords.*item_codebook_size=8"
    ):
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            num_user_codebooks=2,
            user_codebook_size=4,
            item_quantizer=_tiny_quantizer(3, 16, 0),
            num_item_codebooks=3,
            item_codebook_size=8,
        )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"num_user_codebooks": 0}, "num_user_codebooks must be an integer in \\[1, 64\\], got 0"),
        ({"num_user_codebooks": 65}, "num_user_codebooks must be an integer in \\[1, 64\\], got 65"),
        ({"user_codebook_size": 1}, "user_codebook_size must be an integer in \\[2, 65536\\], got 1"),
        ({"item_codebook_size": 65537}, "item_codebook_size must be an integer in \\[2, 65536\\], got 65537"),
        ({"num_item_codebooks": True}, "num_item_codebooks must be an integer in \\[1, 64\\], got True"),
        ({"num_item_codebooks": 2.0}, "num_item_codebooks must be an integer in \\[1, 64\\], got 2.0"),
        ({"num_item_codebooks": None}, "number of item codebooks \\(K\\) and their size \\(L\\) are unknown"),
    ],
)
def test_k_and_l_out_of_range(tiny_t5_tokenizer_dir, arguments, message):
    sizes = {"num_user_codebooks": 2, "user_codebook_size": 4, "num_item_codebooks": 2, "item_codebook_size": 4}
    sizes.update(arguments)
    with pytest.raises(ValueError, match=message):
        TokenRecTokenizer(tiny_t5_tokenizer_dir, **sizes)


def test_ids_must_match_code_rows(tiny_t5_tokenizer_dir):
    with pytest.raises(ValueError, match="user_ids from user_ids has 1 entries but there are 2 user code rows"):
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            num_user_codebooks=2,
            user_codebook_size=4,
            num_item_codebooks=2,
            item_codebook_size=4,
            user_codes=torch.zeros(2, 2, dtype=torch.long),
            user_ids=["a"],
        )


def test_token_formats_must_differ(tiny_t5_tokenizer_dir):
    with pytest.raises(ValueError, match="produce the same token names"):
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            num_user_codebooks=2,
            user_codebook_size=4,
            num_item_codebooks=2,
            item_codebook_size=4,
            item_token_format="<u{codebook}-{codeword}>",
        )
    with pytest.raises(ValueError, match="must use both \\{codebook\\} and \\{codeword\\}"):
        TokenRecTokenizer(
            tiny_t5_tokenizer_dir,
            num_user_codebooks=2,
            user_codebook_size=4,
            num_item_codebooks=2,
            item_codebook_size=4,
            user_token_format="<user-{codeword}>",
        )


# Encoding and decoding.


def test_call_pads_dynamically(table_tokenizer):
    short = table_tokenizer.build_prompt("user_1", None, template=0)
    long = table_tokenizer.build_prompt("user_1", [f"item_{index}" for index in range(8)], template=5, rng=0)
    batch = table_tokenizer([short, long])
    assert isinstance(batch["input_ids"], torch.Tensor)
    lengths = [len(table_tokenizer(text, return_tensors=None)["input_ids"]) for text in (short, long)]
    assert batch["input_ids"].shape == (2, max(lengths))
    assert batch["attention_mask"][0].sum() == lengths[0]
    assert batch["input_ids"][0, lengths[0] :].eq(table_tokenizer.pad_token_id).all()
    assert table_tokenizer.pad_token_id == 0


def test_batch_decode_round_trip(table_tokenizer):
    prompts = [table_tokenizer.build_prompt(u, ["item_1", "item_2"], template=LOWERCASE_TEMPLATE) for u in range(3)]
    batch = table_tokenizer(prompts)
    texts = table_tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
    for text, prompt in zip(texts, prompts, strict=True):
        assert (
            table_tokenizer(text, return_tensors=None)["input_ids"]
            == (table_tokenizer(prompt, return_tensors=None)["input_ids"])
        )


# Saving and loading.

SAVED_FILES = {
    "item_codes.safetensors",
    "item_ids.json",
    "item_quantizer",
    "item_quantizer/config.json",
    "item_quantizer/model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenrec_tokenizer_config.json",
    "user_codes.safetensors",
    "user_ids.json",
    "user_quantizer",
    "user_quantizer/config.json",
    "user_quantizer/model.safetensors",
}


def _listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def _fixed_prompts(tokenizer: TokenRecTokenizer) -> list[str]:
    prompts = []
    for template_id in range(len(tokenizer.templates)):
        history = [f"item_{(template_id * 7 + offset) % NUM_ITEMS}" for offset in range(4)]
        prompts.append(
            tokenizer.build_prompt(f"user_{template_id % NUM_USERS}", history, template_id, rng=template_id)
        )
    return prompts


def test_save_folder_contents(quantized_tokenizer, tmp_path):
    folder = tmp_path / "tokenizer"
    saved = quantized_tokenizer.save_pretrained(folder)
    assert _listing(folder) == SAVED_FILES
    assert {Path(path).name for path in saved} == {name for name in SAVED_FILES if "/" not in name}
    assert not [path for path in tmp_path.iterdir() if path.name != "tokenizer"]

    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    assert tokenizer_config["tokenizer_class"] == "TokenRecTokenizer"
    config = json.loads((folder / "tokenrec_tokenizer_config.json").read_text())
    assert config["num_user_codebooks"] == USER_K
    assert config["item_codebook_size"] == ITEM_L
    assert config["user_token_format"] == "<u{codebook}-{codeword}>"
    assert config["templates"] == list(DEFAULT_TEMPLATES)
    assert config["unseen_template_id"] == 10
    assert "tokenrec_hf_version" in config
    assert json.loads((folder / "item_ids.json").read_text())[:2] == ["item_0", "item_1"]


def test_save_load_identical_ids(quantized_tokenizer, tmp_path):
    quantized_tokenizer.save_pretrained(tmp_path)
    loaded = TokenRecTokenizer.from_pretrained(tmp_path)

    prompts = _fixed_prompts(quantized_tokenizer)
    assert _fixed_prompts(loaded) == prompts
    assert torch.equal(loaded(prompts)["input_ids"], quantized_tokenizer(prompts)["input_ids"])
    assert len(loaded) == len(quantized_tokenizer)
    assert torch.equal(loaded.user_token_ids, quantized_tokenizer.user_token_ids)
    assert torch.equal(loaded.item_codes, quantized_tokenizer.item_codes)
    assert loaded.user_ids == quantized_tokenizer.user_ids
    assert loaded.templates == quantized_tokenizer.templates

    embeddings = torch.randn(5, INPUT_DIM)
    assert loaded.encode_new_users(embeddings) == quantized_tokenizer.encode_new_users(embeddings)
    assert loaded.encode_new_items(embeddings) == quantized_tokenizer.encode_new_items(embeddings)


def test_save_load_after_adding_users(quantized_tokenizer, tmp_path):
    quantized_tokenizer.add_users(torch.randn(2, INPUT_DIM), ["late_1", "late_2"])
    quantized_tokenizer.save_pretrained(tmp_path)
    loaded = TokenRecTokenizer.from_pretrained(tmp_path)
    assert loaded.user_token_string("late_2") == quantized_tokenizer.user_token_string("late_2")


def test_save_without_quantizers(table_tokenizer, quantized_tokenizer, tmp_path):
    quantized_tokenizer.save_pretrained(tmp_path)
    table_tokenizer.save_pretrained(tmp_path)
    assert _listing(tmp_path) == {name for name in SAVED_FILES if "quantizer" not in name}
    loaded = TokenRecTokenizer.from_pretrained(tmp_path)
    assert loaded.user_quantizer is None
    assert torch.equal(loaded.user_codes, table_tokenizer.user_codes)


def test_save_keeps_other_artifacts(table_tokenizer, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    table_tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_text() == "{}"


def test_save_load_t5_prompts_identical(t5_small_dir, tmp_path):
    tokenizer = TokenRecTokenizer(
        t5_small_dir,
        num_user_codebooks=USER_K,
        user_codebook_size=USER_L,
        num_item_codebooks=ITEM_K,
        item_codebook_size=ITEM_L,
        user_codes=_unique_codes(NUM_USERS, USER_K, USER_L),
        item_codes=_unique_codes(NUM_ITEMS, ITEM_K, ITEM_L),
        user_ids=[f"user_{index}" for index in range(NUM_USERS)],
        item_ids=[f"item_{index}" for index in range(NUM_ITEMS)],
    )
    tokenizer.save_pretrained(tmp_path)
    loaded = TokenRecTokenizer.from_pretrained(tmp_path)
    prompts = _fixed_prompts(tokenizer)
    assert torch.equal(loaded(prompts)["input_ids"], tokenizer(prompts)["input_ids"])


@pytest.mark.parametrize(
    "name",
    ["tokenizer.json", "tokenrec_tokenizer_config.json", "user_codes.safetensors", "item_ids.json"],
)
def test_load_missing_file(table_tokenizer, tmp_path, name):
    table_tokenizer.save_pretrained(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(FileNotFoundError, match=name.replace(".", "\\.")):
        TokenRecTokenizer.from_pretrained(tmp_path)


def test_load_missing_quantizer_folder(quantized_tokenizer, tmp_path):
    quantized_tokenizer.save_pretrained(tmp_path)
    for path in sorted((tmp_path / "item_quantizer").iterdir()):
        path.unlink()
    (tmp_path / "item_quantizer").rmdir()
    with pytest.raises(FileNotFoundError, match="records a item MQ-Tokenizer in item_quantizer/"):
        TokenRecTokenizer.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("tokenrec_tokenizer_config.json", "is not valid JSON"),
        ("user_ids.json", "is not valid JSON"),
        ("item_codes.safetensors", "item_codes.safetensors .*corrupted"),
        ("tokenizer.json", "Could not load the base tokenizer files"),
    ],
)
def test_load_corrupted_file(table_tokenizer, tmp_path, name, message):
    table_tokenizer.save_pretrained(tmp_path)
    path = tmp_path / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(ValueError, match=message):
        TokenRecTokenizer.from_pretrained(tmp_path)


def test_load_ids_from_other_save(table_tokenizer, tmp_path):
    table_tokenizer.save_pretrained(tmp_path)
    (tmp_path / "user_ids.json").write_text(json.dumps(["only_one"]))
    with pytest.raises(ValueError, match="lists 1 users, user_codes.safetensors has 6 code rows"):
        TokenRecTokenizer.from_pretrained(tmp_path)


def test_load_codes_not_matching_k(table_tokenizer, tmp_path):
    table_tokenizer.save_pretrained(tmp_path)
    config_path = tmp_path / "tokenrec_tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["user_codebook_size"] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="outside \\[0, 4\\)"):
        TokenRecTokenizer.from_pretrained(tmp_path)


def test_load_config_missing_keys(table_tokenizer, tmp_path):
    table_tokenizer.save_pretrained(tmp_path)
    config_path = tmp_path / "tokenrec_tokenizer_config.json"
    config = json.loads(config_path.read_text())
    del config["templates"]
    config_path.write_text(json.dumps(config))
    with pytest.raises(ValueError, match="lacks the keys \\['templates'\\]"):
        TokenRecTokenizer.from_pretrained(tmp_path)


def test_load_hub_id_offline():
    with pytest.raises(HubUnreachableError, match="pass its local folder instead"):
        TokenRecTokenizer.from_pretrained("someone/tokenrec-not-cached")


# Hub upload (the Hub's servers are mocked).


def test_save_pretrained_push_to_hub(table_tokenizer, tmp_path, monkeypatch):
    from huggingface_hub import HfApi

    calls = {}

    def fake_create_repo(self, repo_id, **kwargs):
        calls["create_repo"] = (repo_id, kwargs)
        return SimpleNamespace(repo_id=f"someone/{repo_id}")

    def fake_create_commit(self, repo_id, operations, **kwargs):
        calls["create_commit"] = (repo_id, sorted(operation.path_in_repo for operation in operations), kwargs)
        return "commit-url"

    monkeypatch.setattr(HfApi, "create_repo", fake_create_repo)
    monkeypatch.setattr(HfApi, "create_commit", fake_create_commit)
    (tmp_path / "config.json").write_text("{}")
    table_tokenizer.save_pretrained(tmp_path, push_to_hub=True, repo_id="tokrec", commit_message="Add tokenizer")

    assert calls["create_repo"][0] == "tokrec"
    repo_id, paths, kwargs = calls["create_commit"]
    assert repo_id == "someone/tokrec"
    assert kwargs["commit_message"] == "Add tokenizer"
    assert paths == sorted(name for name in SAVED_FILES if "quantizer" not in name)


def test_push_to_hub_mixin(quantized_tokenizer, monkeypatch):
    from huggingface_hub import HfApi, ModelCard
    from huggingface_hub.errors import EntryNotFoundError

    uploaded = {}

    def fake_load(repo_id_or_path, **kwargs):
        raise EntryNotFoundError("no README.md yet")

    def fake_create_commit(self, repo_id, operations, **kwargs):
        uploaded["paths"] = sorted(operation.path_in_repo for operation in operations)
        return "commit-url"

    monkeypatch.setattr(ModelCard, "load", fake_load)
    monkeypatch.setattr(HfApi, "create_repo", lambda self, repo_id, **kwargs: SimpleNamespace(repo_id=repo_id))
    monkeypatch.setattr(HfApi, "create_commit", fake_create_commit)
    quantized_tokenizer.push_to_hub("someone/tokrec")
    assert uploaded["paths"] == sorted(
        {name for name in SAVED_FILES if name not in ("user_quantizer", "item_quantizer")} | {"README.md"}
    )


# AutoTokenizer.


class _RegistrationTestConfig(PreTrainedConfig):
    model_type = "tokenrec_tokenizer_registration_test"


def test_auto_tokenizer_registration(table_tokenizer, tmp_path):
    AutoConfig.register(_RegistrationTestConfig.model_type, _RegistrationTestConfig, exist_ok=True)
    AutoTokenizer.register(_RegistrationTestConfig, tokenizer_class=TokenRecTokenizer, exist_ok=True)

    table_tokenizer.save_pretrained(tmp_path / "tokenizer_only")
    loaded = AutoTokenizer.from_pretrained(tmp_path / "tokenizer_only")
    assert isinstance(loaded, TokenRecTokenizer)
    prompts = _fixed_prompts(table_tokenizer)
    assert torch.equal(loaded(prompts)["input_ids"], table_tokenizer(prompts)["input_ids"])

    # A model folder, with the model's config.json beside the tokenizer files, resolves the same way.
    _RegistrationTestConfig().save_pretrained(tmp_path / "with_model")
    table_tokenizer.save_pretrained(tmp_path / "with_model")
    assert isinstance(AutoTokenizer.from_pretrained(tmp_path / "with_model"), TokenRecTokenizer)
    assert os.path.isfile(tmp_path / "with_model" / "config.json")
