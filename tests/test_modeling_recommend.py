"""Tests of TokenRecForRetrieval with the real TokenRecTokenizer: building, recommending, saving beside the tokenizer."""

from __future__ import annotations

import pytest
import torch
from transformers import T5Config

from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval
from tokenrec_hf.quantization import MQTokenizer, MQTokenizerConfig
from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer

K, L = 3, 4
DIM = 16
NUM_USERS, NUM_ITEMS = 12, 30


def make_quantizer(seed: int) -> MQTokenizer:
    torch.manual_seed(seed)
    config = MQTokenizerConfig(
        input_dim=DIM,
        num_codebooks=K,
        codebook_size=L,
        codebook_dim=8,
        encoder_hidden_sizes=(16, 16, 16),
        decoder_hidden_sizes=(16, 16, 16),
    )
    return MQTokenizer(config).eval()


def make_tokenizer(base_dir, seed: int = 0, with_quantizers: bool = True) -> TokenRecTokenizer:
    """Build a tokenizer whose NUM_USERS users and NUM_ITEMS items get random codes drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    quantizers = {"user_quantizer": make_quantizer(1), "item_quantizer": make_quantizer(3)} if with_quantizers else {}
    return TokenRecTokenizer(
        str(base_dir),
        num_user_codebooks=K,
        user_codebook_size=L,
        num_item_codebooks=K,
        item_codebook_size=L,
        user_codes=torch.randint(0, L, (NUM_USERS, K), generator=generator),
        item_codes=torch.randint(0, L, (NUM_ITEMS, K), generator=generator),
        user_ids=[f"user{index}" for index in range(NUM_USERS)],
        item_ids=[f"item{index}" for index in range(NUM_ITEMS)],
        **quantizers,
    )


@pytest.fixture
def tokenizer(tiny_t5_tokenizer_dir) -> TokenRecTokenizer:
    return make_tokenizer(tiny_t5_tokenizer_dir)


@pytest.fixture
def item_table() -> torch.Tensor:
    return torch.randn(NUM_ITEMS, DIM, generator=torch.Generator().manual_seed(2))


def tiny_backbone() -> T5Config:
    return T5Config(vocab_size=300, d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, dropout_rate=0.0)


@pytest.fixture
def model(tokenizer, item_table) -> TokenRecForRetrieval:
    torch.manual_seed(0)
    return TokenRecForRetrieval.from_backbone(
        tiny_backbone(), tokenizer, item_table, projection_hidden_sizes=(32, 32)
    ).eval()


def test_from_backbone_matches_tokenizer(model, tokenizer):
    assert model.config.vocab_size == len(tokenizer)
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    assert model.config.num_item_codebooks == K
    assert model.config.item_codebook_size == L
    assert model.config.num_items == NUM_ITEMS
    assert model.config.collaborative_dim == DIM
    assert model.config.backbone_pretrained is False


def test_from_pretrained_backbone_keeps_text_rows(tmp_path, tokenizer, item_table):
    from transformers import T5Model

    torch.manual_seed(5)
    text_vocab = len(tokenizer.base_tokenizer) - 2 * K * L
    pretrained = T5Model(T5Config(**{**tiny_backbone().to_dict(), "vocab_size": text_vocab}))
    pretrained.save_pretrained(tmp_path / "t5")

    model = TokenRecForRetrieval.from_backbone(
        str(tmp_path / "t5"), tokenizer, item_table, projection_hidden_sizes=(32, 32)
    )

    embedding = model.get_input_embeddings().weight
    assert embedding.shape[0] == len(tokenizer)
    assert torch.equal(embedding[:text_vocab], pretrained.shared.weight)
    assert model.config.backbone_pretrained is True
    assert model.config.backbone_name_or_path == str(tmp_path / "t5")
    encoder_query = model.backbone.encoder.block[0].layer[0].SelfAttention.q.weight
    assert torch.equal(encoder_query, pretrained.encoder.block[0].layer[0].SelfAttention.q.weight)


def test_backbone_folder_without_weights_raises(tmp_path, tokenizer):
    tiny_backbone().save_pretrained(tmp_path)

    with pytest.raises(FileNotFoundError, match=r"has no model.safetensors .*pass a T5Config"):
        TokenRecForRetrieval.from_backbone(str(tmp_path), tokenizer)


def test_unreachable_backbone_hub_id_raises(tokenizer):
    from tokenrec_hf.utils import HubUnreachableError

    with pytest.raises(HubUnreachableError, match=r"pass its local folder instead.*random weights"):
        TokenRecForRetrieval.from_backbone("nobody/t5-that-is-not-cached", tokenizer)


def test_recommend_known_users_excludes_history(model, tokenizer):
    histories = [["item0", "item3", "item7"], ["item1"], [f"item{index}" for index in range(0, NUM_ITEMS, 2)]]

    recommendations = model.recommend(tokenizer, users=["user0", "user5", "user11"], histories=histories, top_k=10)

    assert recommendations.scores.shape == (3, 10)
    for row, history in enumerate(histories):
        assert len(recommendations.item_ids[row]) == 10
        assert set(recommendations.item_ids[row]).isdisjoint(history)
        assert set(recommendations.item_ids[row]) <= set(tokenizer.item_ids)
        assert torch.isfinite(recommendations.scores[row]).all()
        assert torch.all(recommendations.scores[row][:-1] >= recommendations.scores[row][1:])


def test_recommend_matches_forward_scores(model, tokenizer):
    recommendations = model.recommend(tokenizer, users=["user2"], top_k=5, template=0)

    prompt = tokenizer.build_prompt("user2", template=0)
    scores = model(**tokenizer([prompt]), return_scores=True).scores[0]
    expected_scores, expected_indices = scores.topk(5)
    assert recommendations.item_indices[0].tolist() == expected_indices.tolist()
    torch.testing.assert_close(recommendations.scores[0], expected_scores, rtol=1e-5, atol=1e-6)
    assert recommendations.item_ids[0] == [tokenizer.item_ids[index] for index in expected_indices.tolist()]


def test_recommend_excludes_best_history_item(model, tokenizer):
    z = model(**tokenizer([tokenizer.build_prompt("user1", template=0)])).query_embeddings
    best = model.score_items(z)[0].argmax().item()

    recommendations = model.recommend(
        tokenizer, users=["user1"], histories=[[tokenizer.item_ids[best]]], top_k=NUM_ITEMS - 1, template=0
    )

    assert tokenizer.item_ids[best] not in recommendations.item_ids[0]
    assert len(set(recommendations.item_ids[0])) == NUM_ITEMS - 1


def test_recommend_without_exclusion_can_return_history(model, tokenizer):
    recommendations = model.recommend(
        tokenizer, users=["user1"], histories=[["item4"]], top_k=NUM_ITEMS, exclude_history=False
    )

    assert "item4" in recommendations.item_ids[0]


def test_recommend_new_users_by_embedding(model, tokenizer):
    embeddings = torch.randn(2, DIM, generator=torch.Generator().manual_seed(7))

    recommendations = model.recommend(tokenizer, user_embeddings=embeddings, histories=[["item2"], []], top_k=5)

    expected_tokens = tokenizer.encode_new_users(embeddings)
    prompt = tokenizer.build_prompt("user0", template=0).replace(
        tokenizer.user_token_string("user0"), expected_tokens[1]
    )
    expected = model(**tokenizer([prompt]), return_scores=True).scores[0].topk(5).indices
    assert recommendations.item_indices[1].tolist() == expected.tolist()
    assert "item2" not in recommendations.item_ids[0]
    assert tokenizer.num_users == NUM_USERS  # recommending does not add users


def test_recommend_new_user_by_history(model, tokenizer):
    recommendations = model.recommend(tokenizer, users=["someone-new"], histories=[["item5", "item6"]], top_k=4)

    assert len(recommendations.item_ids[0]) == 4
    assert {"item5", "item6"}.isdisjoint(recommendations.item_ids[0])


def test_recommend_new_user_by_history_uses_collaborative_model(model, tokenizer):
    class FoldIn:
        def __init__(self):
            self.histories = None

        def fold_in_users(self, histories):
            self.histories = histories
            return torch.ones(len(histories), DIM)

    collaborative_model = FoldIn()
    model.recommend(tokenizer, histories=[["item5", "item6"]], top_k=4, collaborative_model=collaborative_model)

    assert collaborative_model.histories == [[5, 6]]


def test_recommend_includes_added_items(model, tokenizer):
    new_row = model(**tokenizer([tokenizer.build_prompt("user3", template=0)])).query_embeddings.detach()

    tokenizer.add_items(torch.randn(1, DIM), ["brand-new"])
    model.add_item_embeddings(new_row)
    recommendations = model.recommend(tokenizer, users=["user3"], top_k=1, template=0)

    assert recommendations.item_ids[0] == ["brand-new"]
    assert recommendations.scores[0, 0].item() == pytest.approx(1.0, abs=1e-5)


def test_recommend_empty_history_and_unknown_user_raises(model, tokenizer):
    with pytest.raises(ValueError, match=r"User 'ghost' is not in the tokenizer and has an empty history"):
        model.recommend(tokenizer, users=["ghost"], histories=[[]])


def test_recommend_top_k_larger_than_catalog_raises(model, tokenizer):
    with pytest.raises(ValueError, match=rf"top_k={NUM_ITEMS + 1} is invalid: .* catalog size {NUM_ITEMS}"):
        model.recommend(tokenizer, users=["user0"], top_k=NUM_ITEMS + 1)
    with pytest.raises(ValueError, match=rf"top_k={NUM_ITEMS} is larger than the {NUM_ITEMS - 1} items left"):
        model.recommend(tokenizer, users=["user0"], histories=[["item1"]], top_k=NUM_ITEMS)


def test_recommend_mismatched_lengths_raise(model, tokenizer):
    with pytest.raises(ValueError, match=r"different lengths \{'users': 2, 'histories': 1\}"):
        model.recommend(tokenizer, users=["user0", "user1"], histories=[["item1"]])
    with pytest.raises(ValueError, match=r"needs users, histories or user_embeddings"):
        model.recommend(tokenizer)


def test_tokenizer_vocabulary_mismatch_raises(model, tiny_t5_tokenizer_dir):
    other = TokenRecTokenizer(
        str(tiny_t5_tokenizer_dir),
        num_user_codebooks=K,
        user_codebook_size=L + 1,
        num_item_codebooks=K,
        item_codebook_size=L,
    )

    with pytest.raises(ValueError, match=rf"The tokenizer has {len(other)} tokens but the model's embedding has"):
        model.recommend(other, users=["0"])


def test_tokenizer_codebook_mismatch_raises(model, tiny_t5_tokenizer_dir):
    # Same vocabulary size (K * L swapped) but a different item codebook layout.
    other = TokenRecTokenizer(
        str(tiny_t5_tokenizer_dir),
        num_user_codebooks=K,
        user_codebook_size=L,
        num_item_codebooks=L,
        item_codebook_size=K,
    )

    assert len(other) == model.config.vocab_size
    with pytest.raises(
        ValueError, match=rf"num_item_codebooks={L} but the model was trained with num_item_codebooks={K}"
    ):
        model.check_tokenizer(other)


def test_tokenizer_item_count_mismatch_raises(model, tokenizer):
    model.add_item_embeddings(torch.randn(1, DIM))

    with pytest.raises(ValueError, match=rf"has {NUM_ITEMS} items but the model's item table has {NUM_ITEMS + 1}"):
        model.recommend(tokenizer, users=["user0"])


def test_tokenizer_from_another_run_raises(model, tokenizer, tiny_t5_tokenizer_dir):
    # Same K, L, vocabulary and catalog, other codes: as from a second run with the same settings.
    other = make_tokenizer(tiny_t5_tokenizer_dir, seed=99)

    assert len(other) == len(tokenizer)
    with pytest.raises(ValueError, match=r"item codes differ from those this model was trained with"):
        model.recommend(other, users=["user0"])


def test_save_with_tokenizer_round_trip(tmp_path, model, tokenizer):
    histories = [["item0", "item3"], ["item9"]]
    expected = model.recommend(tokenizer, users=["user0", "user4"], histories=histories, top_k=7)

    model.save_pretrained(tmp_path, tokenizer=tokenizer)
    loaded_model = TokenRecForRetrieval.from_pretrained(tmp_path).eval()
    loaded_tokenizer = TokenRecTokenizer.from_pretrained(tmp_path)
    actual = loaded_model.recommend(loaded_tokenizer, users=["user0", "user4"], histories=histories, top_k=7)

    assert actual.item_ids == expected.item_ids
    assert torch.equal(actual.scores, expected.scores)
    names = {path.name for path in tmp_path.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json", "item_ids.json"} <= names


# ---- ID-token rows from the MQ-Tokenizers' codewords ----


def test_codebook_init_keeps_codeword_geometry(model, tokenizer):
    weight = model.get_input_embeddings().weight
    before = weight.detach().clone()
    model.init_id_embeddings_from_codebooks(tokenizer, generator=torch.Generator().manual_seed(0))
    after = weight.detach()

    id_rows = torch.cat([tokenizer.user_token_ids.flatten(), tokenizer.item_token_ids.flatten()])
    text_rows = torch.ones(len(after), dtype=torch.bool)
    text_rows[id_rows] = False
    assert torch.equal(after[text_rows], before[text_rows])
    assert not torch.allclose(after[id_rows], before[id_rows])

    # Up to one scale, the centered rows have the Gram matrix of the centered codewords.
    for quantizer, token_ids in (
        (tokenizer.user_quantizer, tokenizer.user_token_ids),
        (tokenizer.item_quantizer, tokenizer.item_token_ids),
    ):
        codewords = quantizer.codebooks.detach().reshape(-1, quantizer.codebooks.shape[-1])
        codewords = codewords - codewords.mean(dim=0)
        rows = after[token_ids.flatten()]
        rows = rows - rows.mean(dim=0)
        expected, found = codewords @ codewords.T, rows @ rows.T
        scale = found.trace() / expected.trace()
        torch.testing.assert_close(found, scale * expected, atol=1e-4, rtol=1e-4)

    text_spread = (before[text_rows] - before[text_rows].mean(dim=0)).pow(2).sum(dim=1).mean()
    item_rows = after[tokenizer.item_token_ids.flatten()]
    item_spread = (item_rows - item_rows.mean(dim=0)).pow(2).sum(dim=1).mean()
    assert item_spread == pytest.approx(text_spread.item(), rel=1e-3)


def test_codebook_init_needs_quantizers(tiny_t5_tokenizer_dir, item_table):
    tokenizer = make_tokenizer(tiny_t5_tokenizer_dir, with_quantizers=False)
    model = TokenRecForRetrieval.from_backbone(
        tiny_backbone(), tokenizer, item_table, projection_hidden_sizes=(32, 32)
    )
    with pytest.raises(ValueError, match="no user MQ-Tokenizer"):
        model.init_id_embeddings_from_codebooks(tokenizer)
