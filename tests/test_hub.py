"""Tests of sharing a TokenRec model: push_to_hub up to the upload call (Hub mocked), and the model card."""

from __future__ import annotations

from types import SimpleNamespace
from unittest import mock

import pytest
import torch
import yaml
from huggingface_hub import CommitOperationAdd, HfApi
from transformers import T5Config

from tokenrec_hf.configuration_tokenrec import TokenRecConfig
from tokenrec_hf.modelcard import TokenRecModelCardData, load_model_card_data, render_model_card
from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval


def tiny_model(**overrides) -> TokenRecForRetrieval:
    torch.manual_seed(0)
    backbone = T5Config(vocab_size=300, d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8)
    config = TokenRecConfig(
        backbone_config=backbone, collaborative_dim=8, projection_hidden_sizes=(16, 16), **overrides
    )
    model = TokenRecForRetrieval(config)
    model.set_item_embeddings(torch.randn(12, 8))
    return model


@pytest.fixture
def mocked_hub():
    uploads = {}

    def create_commit(self, repo_id, operations, **kwargs):
        # The staging folder is deleted after the call, so read the files now.
        uploads["repo_id"] = repo_id
        uploads["kwargs"] = kwargs
        uploads["files"] = {
            operation.path_in_repo: open(operation.path_or_fileobj, "rb").read()
            for operation in operations
            if isinstance(operation, CommitOperationAdd)
        }
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    def create_repo(self, repo_id, **kwargs):
        uploads["create_repo"] = (repo_id, kwargs)
        return SimpleNamespace(repo_id=repo_id)

    with (
        mock.patch.object(HfApi, "create_repo", create_repo),
        mock.patch.object(HfApi, "create_commit", create_commit),
    ):
        yield uploads


def test_push_to_hub_uploads_model_and_card(mocked_hub, tmp_path):
    model = tiny_model()
    model.model_card_data = TokenRecModelCardData(dataset_name="lastfm", metrics={"hr@20": 0.1, "ndcg@20": 0.05})

    result = model.push_to_hub("someone/tokenrec-lastfm", private=True, commit_message="first upload")

    assert mocked_hub["create_repo"] == ("someone/tokenrec-lastfm", {"private": True, "token": None, "exist_ok": True})
    assert mocked_hub["repo_id"] == "someone/tokenrec-lastfm"
    assert mocked_hub["kwargs"]["commit_message"] == "first upload"
    assert sorted(mocked_hub["files"]) == ["README.md", "config.json", "model.safetensors"]
    readme = mocked_hub["files"]["README.md"].decode()
    assert "lastfm" in readme
    assert "0.1000" in readme
    assert result.commit_url.endswith("/commit/0")

    # The uploaded files load back into the same model.
    for name, content in mocked_hub["files"].items():
        (tmp_path / name).write_bytes(content)
    loaded = TokenRecForRetrieval.from_pretrained(tmp_path)
    assert torch.equal(loaded.item_embeddings, model.item_embeddings)


def test_save_pretrained_with_push_to_hub(mocked_hub, tmp_path):
    tiny_model().save_pretrained(tmp_path / "tokenrec-ml1m", push_to_hub=True, repo_id="someone/tokenrec-ml1m")

    assert mocked_hub["repo_id"] == "someone/tokenrec-ml1m"
    assert (tmp_path / "tokenrec-ml1m" / "model.safetensors").is_file()


def test_push_to_hub_with_tokenizer(mocked_hub, tiny_t5_tokenizer_dir):
    from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer

    tokenizer = TokenRecTokenizer(
        str(tiny_t5_tokenizer_dir),
        num_user_codebooks=2,
        user_codebook_size=3,
        num_item_codebooks=2,
        item_codebook_size=3,
    )
    model = TokenRecForRetrieval.from_backbone(
        T5Config(vocab_size=300, d_model=32, d_ff=64, num_layers=1, num_heads=4, d_kv=8),
        tokenizer,
        torch.randn(0, 8),
        projection_hidden_sizes=(16, 16),
    )

    model.push_to_hub("someone/with-tokenizer", tokenizer=tokenizer)

    assert {"config.json", "model.safetensors", "README.md", "tokenizer.json", "item_ids.json"} <= set(
        mocked_hub["files"]
    )


def test_model_card_records_protocol_backbone_and_usage():
    model = tiny_model(backbone_pretrained=True, backbone_name_or_path="google-t5/t5-small")
    card_data = TokenRecModelCardData(
        dataset_name="beauty",
        metrics={"hr@10": 0.05, "ndcg@10": 0.03},
        unseen_user_metrics={"hr@10": 0.04},
        training={"epochs": 3},
    )

    text = render_model_card(model, card_data)
    header = yaml.safe_load(text.split("---\n")[1])

    assert header["library_name"] == "tokenrec_hf"
    assert header["base_model"] == "google-t5/t5-small"
    assert header["tokenrec"]["dataset_name"] == "beauty"
    assert "pretrained weights from `google-t5/t5-small`" in text
    assert "Leave-one-out split" in text
    assert "full item catalog" in text
    assert "score minus infinity" in text
    assert "| hr@10 | ndcg@10 |" in text
    assert "| 0.0500 | 0.0300 |" in text
    assert "unseen users" in text
    assert "- epochs: 3" in text
    assert "model.recommend(tokenizer" in text


def test_model_card_without_metrics_says_so():
    text = render_model_card(tiny_model())

    assert "Not evaluated yet" in text
    assert "**random initialization**" in text
    assert "base_model" not in text.split("---\n")[1]


def test_model_card_data_round_trip(tmp_path):
    model = tiny_model()
    model.model_card_data = TokenRecModelCardData(dataset_name="ml1m", metrics={"hr@20": 0.2}, num_users=6040)

    model.save_pretrained(tmp_path)

    assert load_model_card_data(tmp_path) == model.model_card_data


def test_unreadable_card_header_warns(tmp_path, caplog):
    (tmp_path / "README.md").write_text("---\nkey: [unclosed\n---\nbody\n")

    with caplog.at_level("WARNING"):
        card_data = load_model_card_data(tmp_path)

    assert card_data == TokenRecModelCardData()
    assert "Could not read the model card header" in caplog.text
