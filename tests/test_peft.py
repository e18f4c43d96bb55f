"""Tests of LoRA fine-tuning: ID-token rows and the head train, the adapter reloads onto the resized vocabulary."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import T5Config

from tokenrec_hf.configuration_tokenrec import TokenRecConfig
from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval, apply_lora

TEXT_VOCAB = 300
# Two user and two item codebooks of five codewords each: 20 ID tokens after the text vocabulary.
NUM_ID_TOKENS = 20
DIM = 16


def resized_model() -> TokenRecForRetrieval:
    torch.manual_seed(0)
    backbone = T5Config(
        vocab_size=TEXT_VOCAB, d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8, dropout_rate=0.0
    )
    config = TokenRecConfig(
        backbone_config=backbone,
        collaborative_dim=DIM,
        projection_hidden_sizes=(32, 32),
        num_user_codebooks=2,
        user_codebook_size=5,
        num_item_codebooks=2,
        item_codebook_size=5,
    )
    model = TokenRecForRetrieval(config)
    model.resize_token_embeddings(TEXT_VOCAB + NUM_ID_TOKENS)
    model.set_item_embeddings(torch.randn(30, DIM, generator=torch.Generator().manual_seed(1)))
    return model


def batch() -> dict[str, torch.Tensor]:
    input_ids = torch.tensor([[5, 17, 300, 301, 312, 9, 1], [8, 305, 315, 319, 1, 0, 0]])
    return {"input_ids": input_ids, "attention_mask": (input_ids != 0).long()}


def train_steps(model, steps: int = 4) -> list[float]:
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(steps):
        output = model(**batch(), positive_item_ids=torch.tensor([0, 1]), negative_item_ids=torch.tensor([[2], [3]]))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    return losses


def test_resize_updates_config():
    model = resized_model()

    assert model.config.vocab_size == TEXT_VOCAB + NUM_ID_TOKENS
    assert model.get_input_embeddings().weight.shape == (TEXT_VOCAB + NUM_ID_TOKENS, 32)


def test_lora_trains_id_rows_and_head_only():
    model = resized_model()
    embedding_before = model.get_input_embeddings().weight.detach().clone()
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0)

    trainable = {name for name, parameter in peft_model.named_parameters() if parameter.requires_grad}
    losses = train_steps(peft_model)

    assert losses[-1] < losses[0]
    assert any("lora_A" in name for name in trainable)
    assert any("trainable_tokens_delta" in name for name in trainable)
    assert any("projection.modules_to_save" in name for name in trainable)
    assert not any("SelfAttention.k.weight" in name or name.endswith("wi.weight") for name in trainable)
    merged = peft_model.merge_and_unload()
    embedding_after = merged.get_input_embeddings().weight.detach()
    assert torch.equal(embedding_after[:TEXT_VOCAB], embedding_before[:TEXT_VOCAB])
    changed_rows = (embedding_after != embedding_before).any(dim=1).nonzero().flatten().tolist()
    # Only the ID tokens present in the batch get a gradient.
    assert changed_rows == [300, 301, 305, 312, 315, 319]


def test_adapter_reload_gives_identical_outputs(tmp_path):
    model = resized_model()
    model.save_pretrained(tmp_path / "base")
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    train_steps(peft_model)
    peft_model.eval()
    expected = peft_model(**batch(), return_scores=True)

    peft_model.save_pretrained(tmp_path / "adapter")
    base = TokenRecForRetrieval.from_pretrained(tmp_path / "base")
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    actual = reloaded(**batch(), return_scores=True)

    assert sorted(path.name for path in (tmp_path / "adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]
    assert torch.equal(actual.query_embeddings, expected.query_embeddings)
    assert torch.equal(actual.scores, expected.scores)


def test_merged_model_saves_as_plain_tokenrec(tmp_path):
    model = resized_model()
    peft_model = apply_lora(model, r=4, alpha=8, dropout=0.0)
    train_steps(peft_model, steps=2)
    peft_model.eval()
    expected = peft_model(**batch()).query_embeddings

    merged = peft_model.merge_and_unload()
    merged.save_pretrained(tmp_path)
    loaded = TokenRecForRetrieval.from_pretrained(tmp_path).eval()

    torch.testing.assert_close(loaded(**batch()).query_embeddings, expected, rtol=1e-5, atol=1e-6)


def test_apply_lora_needs_id_token_rows():
    backbone = T5Config(vocab_size=TEXT_VOCAB, d_model=32, d_ff=64, num_layers=1, num_heads=4, d_kv=8)
    model = TokenRecForRetrieval(TokenRecConfig(backbone_config=backbone, projection_hidden_sizes=(32, 32)))

    with pytest.raises(ValueError, match=r"cannot infer the ID-token rows"):
        apply_lora(model)
    with pytest.raises(ValueError, match=r"id_token_indices contains \[300\], outside the vocabulary \[0, 300\)"):
        apply_lora(model, id_token_indices=[299, 300])
