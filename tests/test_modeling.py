"""Tests of TokenRecConfig and TokenRecForRetrieval with a tiny T5 built in code and plain tensors of token ids."""

from __future__ import annotations

import json
import re

import pytest
import torch
from transformers import AutoConfig, AutoModel, T5Config

from tokenrec_hf.configuration_tokenrec import TokenRecConfig
from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval, register_auto_classes
from tokenrec_hf.utils import HubUnreachableError

VOCAB_SIZE = 320
NUM_ITEMS = 40
DIM = 16


def tiny_backbone_config() -> T5Config:
    return T5Config(vocab_size=VOCAB_SIZE, d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, dropout_rate=0.0)


def tiny_config(**overrides) -> TokenRecConfig:
    values = {
        "backbone_config": tiny_backbone_config(),
        "collaborative_dim": DIM,
        "projection_hidden_sizes": (32, 32),
        "num_items": NUM_ITEMS,
        "vocab_size": VOCAB_SIZE,
    }
    values.update(overrides)
    return TokenRecConfig(**values)


def tiny_model(seed: int = 0, **overrides) -> TokenRecForRetrieval:
    torch.manual_seed(seed)
    model = TokenRecForRetrieval(tiny_config(**overrides))
    model.set_item_embeddings(torch.randn(NUM_ITEMS, DIM, generator=torch.Generator().manual_seed(seed + 1)))
    return model


def prompt_batch() -> dict[str, torch.Tensor]:
    input_ids = torch.tensor([[5, 17, 300, 301, 302, 9, 1], [8, 310, 311, 312, 1, 0, 0], [4, 4, 4, 303, 304, 305, 1]])
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}


# ---------------------------------------------------------------------- config


def test_config_round_trips_through_json(tmp_path):
    config = tiny_config(margin=0.05, query_pooling="encoder_mean", num_item_codebooks=3, item_codebook_size=8)

    config.save_pretrained(tmp_path)
    loaded = TokenRecConfig.from_pretrained(tmp_path)

    assert isinstance(loaded.backbone_config, T5Config)
    assert loaded.backbone_config.d_model == 32
    assert loaded.backbone_config.vocab_size == VOCAB_SIZE
    assert loaded.margin == 0.05
    assert loaded.query_pooling == "encoder_mean"
    assert loaded.projection_hidden_sizes == [32, 32]
    assert loaded.num_item_codebooks == 3
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "tokenrec"
    assert saved["backbone_config"]["model_type"] == "t5"
    assert saved["tokenrec_hf_version"] == "0.1.0"
    original, reloaded = config.to_dict(), loaded.to_dict()
    original.pop("_name_or_path", None)
    reloaded.pop("_name_or_path", None)
    assert reloaded == original


def test_config_vocab_size_sets_backbone():
    config = TokenRecConfig(backbone_config=tiny_backbone_config(), vocab_size=500)

    assert config.backbone_config.vocab_size == 500


def test_config_accepts_backbone_dict():
    config = TokenRecConfig(backbone_config={"model_type": "t5", "d_model": 48, "num_layers": 1})

    assert config.backbone_config.d_model == 48


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"query_pooling": "cls"}, r"query_pooling='cls' is not supported; use one of \['decoder', 'encoder_mean'\]"),
        ({"margin": 1.5}, r"margin=1.5 is invalid"),
        ({"projection_hidden_sizes": (32,)}, r"projection_hidden_sizes=\[32\] is invalid"),
        ({"projection_activation": "swish"}, r"projection_activation='swish' is not supported"),
        ({"collaborative_dim": 0}, r"collaborative_dim=0 is invalid"),
        ({"num_negatives": 0}, r"num_negatives=0 is invalid"),
        ({"num_items": -1}, r"num_items=-1 is invalid"),
        ({"item_codebook_size": 0}, r"item_codebook_size=0 is invalid"),
        ({"projection_dropout": 1.0}, r"projection_dropout=1.0 is invalid"),
        ({"backbone_config": {"model_type": "bert"}}, r"model_type 'bert'; TokenRec supports T5 backbones only"),
    ],
)
def test_config_rejects_bad_value(overrides, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**overrides)


def test_config_from_newer_version_warns(tmp_path, caplog):
    tiny_config().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["tokenrec_hf_version"] = "99.0.0"
    (tmp_path / "config.json").write_text(json.dumps(saved))

    with caplog.at_level("WARNING"):
        loaded = TokenRecConfig.from_pretrained(tmp_path)

    assert "99.0.0" in caplog.text
    assert "newer than the installed" in caplog.text
    assert loaded.tokenrec_hf_version == "99.0.0"


# ---------------------------------------------------------------------- forward


@pytest.mark.parametrize("pooling", ["decoder", "encoder_mean"])
def test_forward_shapes_and_loss(pooling):
    model = tiny_model(query_pooling=pooling)
    batch = prompt_batch()

    output = model(
        **batch,
        positive_item_ids=torch.tensor([0, 5, 9]),
        negative_item_ids=torch.tensor([[1, 2], [3, 4], [6, 7]]),
        return_scores=True,
    )

    assert output.query_embeddings.shape == (3, DIM)
    assert output.scores.shape == (3, NUM_ITEMS)
    assert output.loss.dim() == 0
    assert torch.isfinite(output.loss)
    # With two negatives per positive, the total is the mean over all three pairs per query.
    expected = (output.positive_loss + 2 * output.negative_loss) / 3
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_forward_without_positives_has_no_loss():
    output = tiny_model()(**prompt_batch())

    assert output.loss is None
    assert output.scores is None
    assert output.to_tuple()[0].shape == (3, DIM)


def test_scores_are_cosine_with_item_table():
    model = tiny_model().eval()

    output = model(**prompt_batch(), return_scores=True)

    expected = torch.nn.functional.cosine_similarity(
        output.query_embeddings.unsqueeze(1), model.item_embeddings.unsqueeze(0), dim=-1
    )
    torch.testing.assert_close(output.scores, expected, rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_query():
    model = tiny_model().eval()
    short = torch.tensor([[5, 17, 300, 1]])
    padded = torch.tensor([[5, 17, 300, 1, 0, 0, 0]])

    for pooling_model in (model, tiny_model(query_pooling="encoder_mean").eval()):
        z_short = pooling_model(input_ids=short).query_embeddings
        z_padded = pooling_model(input_ids=padded).query_embeddings
        torch.testing.assert_close(z_short, z_padded, rtol=1e-5, atol=1e-5)


# With a one-token decoder input, each decoder self-attention softmax runs over one key and always equals 1, so the
# queries, keys and relative position bias of the decoder's self-attention receive no gradient.
INERT_UNDER_DECODER_POOLING = re.compile(
    r"backbone\.decoder\.block\.\d+\.layer\.0\.SelfAttention\.(q|k|relative_attention_bias)\.weight"
)


@pytest.mark.parametrize("pooling", ["decoder", "encoder_mean"])
def test_training_lowers_loss_and_changes_parameters(pooling):
    model = tiny_model(seed=3, query_pooling=pooling)
    model.train()
    batch = prompt_batch()
    positives = torch.tensor([0, 5, 9])
    negatives = torch.tensor([[1], [3], [6]])
    before = {name: parameter.detach().clone() for name, parameter in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)

    losses = []
    for _ in range(8):
        output = model(**batch, positive_item_ids=positives, negative_item_ids=negatives)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())

    assert losses[-1] < losses[0]
    unchanged = sorted(name for name, parameter in model.named_parameters() if torch.equal(before[name], parameter))
    expected_unchanged = sorted(
        name for name in before if pooling == "decoder" and INERT_UNDER_DECODER_POOLING.match(name)
    )
    assert unchanged == expected_unchanged
    assert all(parameter.requires_grad for parameter in model.parameters())


def test_item_table_is_not_trained():
    model = tiny_model()
    table = model.item_embeddings.clone()

    output = model(
        **prompt_batch(), positive_item_ids=torch.tensor([0, 1, 2]), negative_item_ids=torch.tensor([3, 4, 5])
    )
    output.loss.backward()

    assert "item_embeddings" not in dict(model.named_parameters())
    assert torch.equal(model.item_embeddings, table)


def test_item_id_out_of_range_raises():
    model = tiny_model()

    with pytest.raises(ValueError, match=rf"positive_item_ids contains item index {NUM_ITEMS}, outside"):
        model(**prompt_batch(), positive_item_ids=torch.tensor([0, 1, NUM_ITEMS]))
    with pytest.raises(ValueError, match=r"negative_item_ids contains item index -1"):
        model(**prompt_batch(), positive_item_ids=torch.tensor([0, 1, 2]), negative_item_ids=torch.tensor([0, -1, 2]))


def test_empty_item_table_raises():
    model = TokenRecForRetrieval(tiny_config(num_items=0))

    with pytest.raises(ValueError, match=r"item table is empty; call `set_item_embeddings"):
        model(**prompt_batch(), positive_item_ids=torch.tensor([0, 1, 2]))


# ---------------------------------------------------------------------- item table


def test_set_and_add_item_embeddings():
    model = tiny_model()
    new_rows = torch.randn(3, DIM)

    model.add_item_embeddings(new_rows)

    assert model.item_embeddings.shape == (NUM_ITEMS + 3, DIM)
    assert model.config.num_items == NUM_ITEMS + 3
    torch.testing.assert_close(model.item_embeddings[-3:], new_rows)
    model.set_item_embeddings(torch.randn(7, DIM))
    assert model.config.num_items == 7


@pytest.mark.parametrize("method", ["set_item_embeddings", "add_item_embeddings"])
def test_item_table_dimension_mismatch_raises(method):
    model = tiny_model()

    with pytest.raises(ValueError, match=rf"has shape \(5, 8\); expected \[num_items, {DIM}\]"):
        getattr(model, method)(torch.randn(5, 8))


def test_item_table_with_nan_raises():
    table = torch.randn(4, DIM)
    table[2, 0] = float("nan")

    with pytest.raises(ValueError, match=r"row 2 contains NaN"):
        tiny_model().set_item_embeddings(table)


def test_new_items_become_retrievable():
    model = tiny_model().eval()
    query = model(**prompt_batch()).query_embeddings[:1].detach()

    model.add_item_embeddings(query * 2.0)
    scores = model(**prompt_batch(), return_scores=True).scores

    assert scores[0].argmax().item() == NUM_ITEMS
    assert scores[0, NUM_ITEMS].item() == pytest.approx(1.0, abs=1e-5)


# ---------------------------------------------------------------------- save and load


@pytest.mark.parametrize("pooling", ["decoder", "encoder_mean"])
def test_save_load_round_trip(tmp_path, pooling):
    model = tiny_model(query_pooling=pooling).eval()
    model.model_card_data.dataset_name = "lastfm"
    model.model_card_data.metrics = {"hr@20": 0.125, "ndcg@20": 0.05}

    model.save_pretrained(tmp_path)
    loaded = TokenRecForRetrieval.from_pretrained(tmp_path).eval()

    assert sorted(path.name for path in tmp_path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    batch = prompt_batch()
    expected = model(**batch, return_scores=True)
    actual = loaded(**batch, return_scores=True)
    assert torch.equal(actual.query_embeddings, expected.query_embeddings)
    assert torch.equal(actual.scores, expected.scores)
    assert torch.equal(loaded.item_embeddings, model.item_embeddings)
    assert loaded.model_card_data.dataset_name == "lastfm"
    assert loaded.model_card_data.metrics == {"hr@20": 0.125, "ndcg@20": 0.05}
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


def test_saved_weights_hold_item_table_and_no_duplicates(tmp_path):
    from safetensors import safe_open

    model = tiny_model()
    model.save_pretrained(tmp_path)

    with safe_open(tmp_path / "model.safetensors", "pt") as handle:
        keys = set(handle.keys())
        table = handle.get_tensor("item_embeddings")
    assert table.shape == (NUM_ITEMS, DIM)
    assert table.dtype == torch.float32
    assert "backbone.shared.weight" in keys
    assert "projection.layers.0.weight" in keys
    assert "projection.layers.6.bias" in keys


def test_failed_save_keeps_previous_files(tmp_path, monkeypatch):
    target = tmp_path / "model"
    tiny_model().save_pretrained(target)
    before = {path.name: path.read_bytes() for path in target.iterdir()}

    def broken_card(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("tokenrec_hf.modeling_tokenrec.write_model_card", broken_card)
    with pytest.raises(RuntimeError, match="disk full"):
        tiny_model(seed=9).save_pretrained(target)

    assert {path.name: path.read_bytes() for path in target.iterdir()} == before
    assert [path.name for path in tmp_path.iterdir()] == ["model"]


def test_added_items_survive_save(tmp_path):
    model = tiny_model()
    model.add_item_embeddings(torch.randn(2, DIM))

    model.save_pretrained(tmp_path)
    loaded = TokenRecForRetrieval.from_pretrained(tmp_path)

    assert loaded.config.num_items == NUM_ITEMS + 2
    assert torch.equal(loaded.item_embeddings, model.item_embeddings)


def test_auto_classes_resolve(tmp_path):
    register_auto_classes()
    register_auto_classes()  # a second call is harmless
    model = tiny_model().eval()
    model.save_pretrained(tmp_path)

    config = AutoConfig.from_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()

    assert isinstance(config, TokenRecConfig)
    assert isinstance(loaded, TokenRecForRetrieval)
    batch = prompt_batch()
    assert torch.equal(loaded(**batch).query_embeddings, model(**batch).query_embeddings)


def test_load_from_newer_version_warns(tmp_path, caplog):
    tiny_model().save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    saved["tokenrec_hf_version"] = "3.0.0"
    (tmp_path / "config.json").write_text(json.dumps(saved))

    with caplog.at_level("WARNING"):
        TokenRecForRetrieval.from_pretrained(tmp_path)

    assert "saved by tokenrec_hf 3.0.0, which is newer" in caplog.text


def test_unreachable_hub_id_explains_offline_use():
    with pytest.raises(HubUnreachableError, match=r"pass its local folder instead.*T5Config"):
        TokenRecForRetrieval.from_pretrained("nobody/tokenrec-model-that-is-not-cached")


def test_missing_weights_file_raises(tmp_path):
    tiny_config().save_pretrained(tmp_path)

    with pytest.raises(FileNotFoundError, match=r"missing \['model.safetensors'\]"):
        TokenRecForRetrieval.from_pretrained(tmp_path)


def test_random_init_is_recorded(tmp_path):
    model = tiny_model()

    model.save_pretrained(tmp_path)
    readme = (tmp_path / "README.md").read_text()

    assert model.config.backbone_pretrained is False
    assert "**random initialization**" in readme


@pytest.mark.parametrize("pooling", ["encoder_mean", "decoder"])
def test_model_leaves_callers_backbone_config_unchanged(pooling):
    backbone = T5Config(vocab_size=100, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)
    before = backbone.to_dict()
    TokenRecForRetrieval(TokenRecConfig(backbone_config=backbone, vocab_size=120, query_pooling=pooling))
    assert backbone.to_dict() == before
