"""Tests for `train_mq_tokenizer`: learning, reproducibility, early stopping, dead codewords and resuming."""

from __future__ import annotations

import pytest
import torch

from tokenrec_hf.quantization import MQTokenizer, MQTokenizerConfig, MQTokenizerTrainingArguments, train_mq_tokenizer

INPUT_DIM = 16


def tiny_config(**overrides) -> MQTokenizerConfig:
    fields = {
        "input_dim": INPUT_DIM,
        "num_codebooks": 2,
        "codebook_size": 8,
        "codebook_dim": 8,
        "encoder_hidden_sizes": [32, 32, 16],
        "decoder_hidden_sizes": [16, 32, 32],
    }
    fields.update(overrides)
    return MQTokenizerConfig(**fields)


def tiny_args(**overrides) -> MQTokenizerTrainingArguments:
    fields = {"num_train_epochs": 5, "train_batch_size": 32, "disable_tqdm": True, "seed": 0}
    fields.update(overrides)
    return MQTokenizerTrainingArguments(**fields)


@pytest.fixture(scope="module")
def clustered_embeddings() -> torch.Tensor:
    """200 embeddings around 10 well-separated centers, with an offset and uneven scales like real embeddings."""
    generator = torch.Generator().manual_seed(1234)
    centers = torch.randn(10, INPUT_DIM, generator=generator) * 3
    points = centers[torch.arange(200) % 10] + 0.3 * torch.randn(200, INPUT_DIM, generator=generator)
    return points * torch.linspace(0.5, 2.0, INPUT_DIM) + 1.0


def test_training_changes_encoder_weights(clustered_embeddings):
    model = MQTokenizer(tiny_config())
    before = {name: value.detach().clone() for name, value in model.named_parameters()}

    trained, _ = train_mq_tokenizer(clustered_embeddings, model, tiny_args(num_train_epochs=3))

    for k, encoder in enumerate(trained.encoders):
        for index, layer in enumerate(encoder.layers):
            name = f"encoders.{k}.layers.{index}.weight"
            assert not torch.allclose(layer.weight, before[name]), f"{name} did not change"
    assert not torch.allclose(trained.decoder.layers[0].weight, before["decoder.layers.0.weight"])


@pytest.mark.parametrize("quantizer", ["kway", "residual"])
def test_training_lowers_validation_error(clustered_embeddings, quantizer):
    _, result = train_mq_tokenizer(
        clustered_embeddings, tiny_config(quantizer=quantizer), tiny_args(num_train_epochs=30)
    )

    losses = [record["validation_reconstruction_loss"] for record in result.history]
    assert min(losses[-5:]) < 0.8 * losses[0]
    assert result.best_validation_loss == min(losses)
    assert result.history[result.best_epoch - 1]["validation_reconstruction_loss"] == result.best_validation_loss


def test_history_records_every_epoch(clustered_embeddings):
    _, result = train_mq_tokenizer(clustered_embeddings, tiny_config(), tiny_args(num_train_epochs=4))

    assert [record["epoch"] for record in result.history] == [1, 2, 3, 4]
    expected_keys = {
        "train_loss",
        "train_reconstruction_loss",
        "train_codebook_loss",
        "train_commitment_loss",
        "validation_reconstruction_loss",
        "usage",
        "min_usage",
        "perplexity",
        "collision_rate",
        "restarted_codewords",
    }
    assert expected_keys <= set(result.history[0])
    assert result.history[-1]["step"] == 4 * 6  # 180 training rows in batches of 32
    assert result.train_runtime > 0


def test_same_seed_gives_same_codes(clustered_embeddings):
    first, first_result = train_mq_tokenizer(clustered_embeddings, tiny_config(), tiny_args(seed=3))
    second, second_result = train_mq_tokenizer(clustered_embeddings, tiny_config(), tiny_args(seed=3))
    other, _ = train_mq_tokenizer(clustered_embeddings, tiny_config(), tiny_args(seed=4))

    assert torch.equal(first.encode(clustered_embeddings), second.encode(clustered_embeddings))
    assert [r["train_loss"] for r in first_result.history] == [r["train_loss"] for r in second_result.history]
    assert not torch.equal(first.codebooks, other.codebooks)


def test_early_stopping_without_improvement(clustered_embeddings):
    # A learning rate too small to change float32 weights leaves the validation error flat after epoch 1.
    args = tiny_args(num_train_epochs=50, learning_rate=1e-20, early_stopping_patience=3, dead_codeword_restart=False)

    _, result = train_mq_tokenizer(clustered_embeddings, tiny_config(), args)

    assert result.stopped_early
    assert len(result.history) == 4
    assert result.best_epoch == 1


def test_dead_codewords_are_restarted(clustered_embeddings):
    def run(restart: bool) -> tuple[MQTokenizer, list[dict]]:
        model = MQTokenizer(tiny_config(mask_ratio=0.0))
        model.set_input_statistics(clustered_embeddings)
        model.initialize_codebooks(clustered_embeddings, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            model.codebooks[0, 3] = 1e4  # Far from every encoder output, so never chosen.
        args = tiny_args(
            num_train_epochs=4,
            learning_rate=1e-4,
            dead_codeword_restart=restart,
            dead_codeword_patience=3,
            early_stopping_patience=None,
        )
        trained, result = train_mq_tokenizer(clustered_embeddings, model, args)
        return trained, result.history

    restarted_model, restarted_history = run(restart=True)
    dead_model, dead_history = run(restart=False)

    assert sum(record["restarted_codewords"] for record in restarted_history) > 0
    assert float(restarted_model.codebooks[0, 3].detach().abs().max()) < 1e3
    assert sum(record["restarted_codewords"] for record in dead_history) == 0
    assert float(dead_model.codebooks[0, 3].detach().abs().max()) > 1e3
    assert 3 not in dead_model.encode(clustered_embeddings)[:, 0].tolist()


def test_kmeans_init_can_be_turned_off(clustered_embeddings):
    model = MQTokenizer(tiny_config())
    before = model.codebooks.detach().clone()
    args = tiny_args(num_train_epochs=1, kmeans_init=False, learning_rate=1e-20, dead_codeword_restart=False)

    trained, _ = train_mq_tokenizer(clustered_embeddings, model, args)

    assert torch.allclose(trained.codebooks, before)


def test_resume_matches_uninterrupted_run(tmp_path, clustered_embeddings):
    common = {"dead_codeword_restart_fraction": 1.0, "save_every_epochs": 1, "save_total_limit": 2}
    full, full_result = train_mq_tokenizer(
        clustered_embeddings, tiny_config(), tiny_args(num_train_epochs=4, output_dir=str(tmp_path / "full"), **common)
    )
    train_mq_tokenizer(
        clustered_embeddings, tiny_config(), tiny_args(num_train_epochs=2, output_dir=str(tmp_path / "cut"), **common)
    )

    resumed, resumed_result = train_mq_tokenizer(
        clustered_embeddings,
        tiny_config(),
        tiny_args(num_train_epochs=4, output_dir=str(tmp_path / "cut"), resume_from_checkpoint=True, **common),
    )

    assert [r["train_loss"] for r in resumed_result.history] == [r["train_loss"] for r in full_result.history]
    for name, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name
    assert sorted(path.name for path in (tmp_path / "full").iterdir()) == ["checkpoint-epoch-3", "checkpoint-epoch-4"]
    assert sorted(path.name for path in (tmp_path / "full" / "checkpoint-epoch-4").iterdir()) == [
        "model",
        "optimizer.json",
        "optimizer.safetensors",
        "trainer_state.json",
        "trainer_state.safetensors",
    ]


def test_resume_rejects_mismatched_checkpoint(tmp_path, clustered_embeddings):
    train_mq_tokenizer(
        clustered_embeddings,
        tiny_config(),
        tiny_args(num_train_epochs=1, output_dir=str(tmp_path), save_every_epochs=1),
    )

    with pytest.raises(ValueError, match="has codebook_size=8 but the model being trained has codebook_size=4"):
        train_mq_tokenizer(
            clustered_embeddings,
            tiny_config(codebook_size=4),
            tiny_args(num_train_epochs=2, output_dir=str(tmp_path), resume_from_checkpoint=True),
        )


def test_resume_without_checkpoint_fails(tmp_path, clustered_embeddings):
    with pytest.raises(FileNotFoundError, match="contains no checkpoint-epoch-<epoch> folder"):
        train_mq_tokenizer(
            clustered_embeddings, tiny_config(), tiny_args(output_dir=str(tmp_path), resume_from_checkpoint=True)
        )


def test_training_rejects_bad_embeddings(clustered_embeddings):
    bad = clustered_embeddings.clone()
    bad[17, 0] = float("nan")

    with pytest.raises(ValueError, match="Embedding row 17 contains NaN"):
        train_mq_tokenizer(bad, tiny_config(), tiny_args())
    with pytest.raises(ValueError, match="embedding dimension 8 does not match input_dim 16"):
        train_mq_tokenizer(clustered_embeddings[:, :8], tiny_config(), tiny_args())


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("validation_fraction", 0.9, r"validation_fraction must be in \[0, 0.5\], got 0.9"),
        ("num_train_epochs", 0, "num_train_epochs must be a positive integer, got 0"),
        ("save_every_epochs", 1, "save_every_epochs is set but output_dir is not"),
        ("dead_codeword_restart_fraction", 0.0, r"dead_codeword_restart_fraction must be in \(0, 1\], got 0.0"),
    ],
)
def test_training_arguments_validation(field, value, message):
    with pytest.raises(ValueError, match=message):
        MQTokenizerTrainingArguments(**{field: value})


def test_training_without_validation_split(clustered_embeddings):
    _, result = train_mq_tokenizer(clustered_embeddings, tiny_config(), tiny_args(validation_fraction=0.0))

    assert "validation_reconstruction_loss" not in result.history[0]
    assert result.best_validation_loss == min(record["train_reconstruction_loss"] for record in result.history)


def test_collapsed_codebook_warns(caplog):
    from tokenrec_hf.quantization import collapsed_codebooks
    from tokenrec_hf.quantization.training import _warn_on_collapsed_codebooks

    # Codebook 1 sends every entity to codeword 0; codebooks 0 and 2 use all 16 codewords.
    codes = torch.stack([torch.arange(64) % 16, torch.zeros(64, dtype=torch.long), torch.arange(64) // 4], dim=1)
    assert collapsed_codebooks(codes, codebook_size=16) == {1: 1 / 16}
    with caplog.at_level("WARNING"):
        _warn_on_collapsed_codebooks(codes, codebook_size=16, learning_rate=5e-3)
    assert "Codebook 1 of the trained MQ-Tokenizer uses 6.2% of its 16 codewords" in caplog.text
    assert "lower learning rate than 0.005 (for example 0.001)" in caplog.text
    assert "Codebook 0" not in caplog.text
    assert "Codebook 2" not in caplog.text

    caplog.clear()
    healthy = torch.stack([torch.arange(16)] * 3, dim=1)
    assert collapsed_codebooks(healthy, codebook_size=16) == {}
    with caplog.at_level("WARNING"):
        _warn_on_collapsed_codebooks(healthy, codebook_size=16, learning_rate=5e-3)
    assert caplog.text == ""
