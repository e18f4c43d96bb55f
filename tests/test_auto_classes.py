"""The package registers every saved artifact with the transformers Auto classes on import."""

import torch
from transformers import AutoConfig, AutoModel

import tokenrec_hf  # noqa: F401  (registers the Auto classes)
from tokenrec_hf import CollaborativeConfig, CollaborativeModel, MQTokenizer, MQTokenizerConfig


def test_auto_loads_collaborative_model(tmp_path):
    model = CollaborativeModel(CollaborativeConfig(architecture="mf", num_users=4, num_items=5, embedding_dim=8))
    model.user_ids = [f"u{index}" for index in range(4)]
    model.item_ids = [f"i{index}" for index in range(5)]
    model.save_pretrained(tmp_path)

    assert isinstance(AutoConfig.from_pretrained(tmp_path), CollaborativeConfig)
    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, CollaborativeModel)
    assert loaded.item_ids == model.item_ids
    assert torch.equal(loaded.item_representations, model.item_representations)


def test_auto_loads_mq_tokenizer(tmp_path):
    config = MQTokenizerConfig(
        input_dim=8,
        num_codebooks=2,
        codebook_size=4,
        codebook_dim=4,
        encoder_hidden_sizes=(16, 16, 16),
        decoder_hidden_sizes=(16, 16, 16),
    )
    model = MQTokenizer(config).eval()
    model.save_pretrained(tmp_path)

    loaded = AutoModel.from_pretrained(tmp_path)
    assert isinstance(loaded, MQTokenizer)
    embeddings = torch.randn(6, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(loaded.encode(embeddings), model.encode(embeddings))
