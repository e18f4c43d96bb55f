"""Tests for the MQ-Tokenizer: configuration, masking, quantization, straight-through gradients and saving."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from tokenrec_hf.quantization import (
    MQTokenizer,
    MQTokenizerConfig,
    MQTokenizerTrainingArguments,
    codebook_metrics,
    dead_unit_fractions,
    evaluate_mq_tokenizer,
    plot_codebook_usage,
    plot_training_curves,
    train_mq_tokenizer,
)
from tokenrec_hf.version import __version__

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
    assignment = torch.arange(200) % 10
    points = centers[assignment] + 0.3 * torch.randn(200, INPUT_DIM, generator=generator)
    return points * torch.linspace(0.5, 2.0, INPUT_DIM) + 1.0


# Configuration.


def test_config_defaults():
    config = MQTokenizerConfig()

    assert config.model_type == "mq_tokenizer"
    assert config.num_codebooks == 3
    assert config.codebook_size == 256
    assert config.beta == 0.25
    assert config.mask_ratio == 0.2
    assert config.quantizer == "kway"
    assert len(config.encoder_hidden_sizes) == 3
    assert len(config.decoder_hidden_sizes) == 3


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("num_codebooks", 0, r"num_codebooks \(K\) must be an integer in \[1, 64\], got 0"),
        ("num_codebooks", 65, r"num_codebooks \(K\) must be an integer in \[1, 64\], got 65"),
        ("codebook_size", 1, r"codebook_size \(L\) must be an integer in \[2, 65536\], got 1"),
        ("mask_ratio", 1.0, r"mask_ratio \(rho\) must be a float in \[0, 1\), got 1.0"),
        ("mask_ratio", -0.1, r"mask_ratio \(rho\) must be a float in \[0, 1\), got -0.1"),
        ("beta", -1.0, r"beta .* must be a non-negative float, got -1.0"),
        ("quantizer", "product", r"quantizer must be one of \['kway', 'residual'\], got 'product'"),
        ("encoder_hidden_sizes", [32, 0], r"encoder_hidden_sizes must be a non-empty list of positive integers"),
        ("input_dim", 0, r"input_dim must be a positive integer, got 0"),
    ],
)
def test_config_rejects_out_of_range(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


def test_one_way_config():
    config = tiny_config(num_codebooks=3, codebook_size=8, mask_ratio=0.3)

    one_way = MQTokenizerConfig.one_way(config)

    assert one_way.num_codebooks == 1
    assert one_way.codebook_size == 24
    assert one_way.mask_ratio == 0.3
    assert one_way.encoder_hidden_sizes == config.encoder_hidden_sizes
    assert MQTokenizerConfig.one_way(num_codebooks=3, codebook_size=256).codebook_size == 768


# Forward pass, masking and the straight-through estimator.


def test_forward_outputs_and_loss(clustered_embeddings):
    model = MQTokenizer(tiny_config(beta=0.5))

    output = model(clustered_embeddings[:20])

    assert output.codes.shape == (20, 2)
    assert output.codes.dtype == torch.long
    assert output.reconstruction.shape == (20, INPUT_DIM)
    assert output.encoder_outputs.shape == (20, 2, 8)
    expected = output.reconstruction_loss + output.codebook_loss + 0.5 * output.commitment_loss
    assert torch.allclose(output.loss, expected)


def test_mask_ratio_is_respected():
    model = MQTokenizer(tiny_config(mask_ratio=0.2))
    torch.manual_seed(0)

    masked = model.mask_inputs(torch.ones(2000, INPUT_DIM))

    zero_fraction = float((masked == 0).float().mean())
    assert abs(zero_fraction - 0.2) < 0.01


def test_masks_are_fresh_and_only_in_training(clustered_embeddings):
    model = MQTokenizer(tiny_config(mask_ratio=0.3))
    inputs = clustered_embeddings[:50]
    original = inputs.clone()

    model.train()
    first = model(inputs).encoder_outputs
    second = model(inputs).encoder_outputs
    model.eval()
    third = model(inputs).encoder_outputs
    fourth = model(inputs).encoder_outputs

    assert not torch.allclose(first, second)
    assert torch.equal(third, fourth)
    assert torch.equal(inputs, original)


def test_no_mask_when_mask_ratio_is_zero(clustered_embeddings):
    model = MQTokenizer(tiny_config(mask_ratio=0.0)).train()

    first = model(clustered_embeddings[:50]).encoder_outputs
    second = model(clustered_embeddings[:50]).encoder_outputs

    assert torch.equal(first, second)


def test_reconstruction_target_is_unmasked_input(clustered_embeddings):
    model = MQTokenizer(tiny_config(mask_ratio=0.5)).train()
    model.set_input_statistics(clustered_embeddings)
    inputs = clustered_embeddings[:40]

    torch.manual_seed(7)
    output = model(inputs)

    # Replay the same mask by hand and decode.
    torch.manual_seed(7)
    targets = model.standardize(inputs)
    masked = targets * (torch.rand_like(targets) >= 0.5)
    _, codewords, _ = model.quantize(model.encode_latents(masked))
    decoded = model.decoder(model.pool_codewords(codewords))
    assert torch.allclose(output.reconstruction_loss, F.mse_loss(decoded, targets))
    assert not torch.allclose(output.reconstruction_loss, F.mse_loss(decoded, masked))


@pytest.mark.parametrize("quantizer", ["kway", "residual"])
def test_reconstruction_gradient_reaches_encoders(clustered_embeddings, quantizer):
    model = MQTokenizer(tiny_config(quantizer=quantizer))
    model.initialize_codebooks(clustered_embeddings)

    model(clustered_embeddings).reconstruction_loss.backward()

    for encoder in model.encoders:
        for layer in encoder.layers:
            assert layer.weight.grad is not None
            assert float(layer.weight.grad.abs().sum()) > 0
    # The codewords are behind the stop-gradient of the straight-through estimator.
    assert model.codebooks.grad is None or float(model.codebooks.grad.abs().sum()) == 0


def test_codebook_loss_updates_only_codewords(clustered_embeddings):
    model = MQTokenizer(tiny_config())

    model(clustered_embeddings).codebook_loss.backward()

    assert float(model.codebooks.grad.abs().sum()) > 0
    assert all(layer.weight.grad is None for encoder in model.encoders for layer in encoder.layers)


def test_commitment_loss_updates_only_encoders(clustered_embeddings):
    model = MQTokenizer(tiny_config())

    model(clustered_embeddings).commitment_loss.backward()

    assert model.codebooks.grad is None
    assert float(model.encoders[0].layers[0].weight.grad.abs().sum()) > 0


# Encoding and decoding.


def test_encode_is_unmasked_in_training_mode(clustered_embeddings):
    model = MQTokenizer(tiny_config(mask_ratio=0.5)).train()

    first = model.encode(clustered_embeddings)
    second = model.encode(clustered_embeddings)

    assert first.dtype == torch.long
    assert first.shape == (200, 2)
    assert torch.equal(first, second)
    assert int(first.min()) >= 0
    assert int(first.max()) < 8
    assert model.training


def test_encode_batches_match_single_pass(clustered_embeddings):
    model = MQTokenizer(tiny_config())

    assert torch.equal(model.encode(clustered_embeddings, batch_size=7), model.encode(clustered_embeddings))


def test_encode_rejects_wrong_dimension():
    model = MQTokenizer(tiny_config())

    with pytest.raises(ValueError, match="embedding dimension 32 does not match input_dim 16"):
        model.encode(torch.randn(4, 32))


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
def test_encode_rejects_non_finite_rows(bad_value):
    model = MQTokenizer(tiny_config())
    embeddings = torch.randn(10, INPUT_DIM)
    embeddings[6, 3] = bad_value

    with pytest.raises(ValueError, match="Embedding row 6 contains NaN or infinite values"):
        model.encode(embeddings)


def test_decode_shapes_and_errors(clustered_embeddings):
    model = MQTokenizer(tiny_config())
    codes = model.encode(clustered_embeddings[:5])

    assert model.decode(codes).shape == (5, INPUT_DIM)
    with pytest.raises(ValueError, match=r"Codes must lie in \[0, 8\)"):
        model.decode(torch.tensor([[0, 8]]))
    with pytest.raises(ValueError, match=r"Expected integer codes of shape \[N, 2\]"):
        model.decode(torch.tensor([[0, 1, 2]]))


def test_one_way_and_residual_code_shapes(clustered_embeddings):
    one_way = MQTokenizer(MQTokenizerConfig.one_way(tiny_config()))
    residual = MQTokenizer(tiny_config(quantizer="residual", num_codebooks=3))

    assert one_way.encode(clustered_embeddings).shape == (200, 1)
    assert len(one_way.encoders) == 1
    assert one_way.codebooks.shape == (1, 16, 8)
    assert residual.encode(clustered_embeddings).shape == (200, 3)
    assert len(residual.encoders) == 1


def test_kmeans_initialization_uses_every_codeword(clustered_embeddings):
    model = MQTokenizer(tiny_config())
    before = model.codebooks.detach().clone()

    model.initialize_codebooks(clustered_embeddings, generator=torch.Generator().manual_seed(0))

    assert bool(model.codebooks_initialized)
    assert not torch.allclose(before, model.codebooks)
    assert codebook_metrics(model.encode(clustered_embeddings), 8)["min_usage"] == 1.0


# Saving and loading.


def test_save_and_load_round_trip(tmp_path, clustered_embeddings):
    model, _ = train_mq_tokenizer(clustered_embeddings, tiny_config(), tiny_args(num_train_epochs=2))
    codes = model.encode(clustered_embeddings)

    model.save_pretrained(tmp_path / "tokenizer")
    loaded = MQTokenizer.from_pretrained(tmp_path / "tokenizer")

    assert sorted(path.name for path in (tmp_path / "tokenizer").iterdir()) == ["config.json", "model.safetensors"]
    assert torch.equal(loaded.encode(clustered_embeddings), codes)
    assert torch.equal(loaded.decode(codes), model.decode(codes))
    assert torch.equal(loaded.input_mean, model.input_mean)
    assert bool(loaded.codebooks_initialized)
    saved = json.loads((tmp_path / "tokenizer" / "config.json").read_text())
    assert saved["model_type"] == "mq_tokenizer"
    assert saved["tokenrec_hf_version"] == __version__
    assert saved["num_codebooks"] == 2


def test_save_overwrites_previous_save(tmp_path, clustered_embeddings):
    folder = tmp_path / "tokenizer"
    MQTokenizer(tiny_config(codebook_size=4)).save_pretrained(folder)

    MQTokenizer(tiny_config(codebook_size=8)).save_pretrained(folder)

    assert MQTokenizer.from_pretrained(folder).config.codebook_size == 8
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert [path.name for path in tmp_path.iterdir()] == ["tokenizer"]


# Metrics and plots.


def test_codebook_metrics_on_known_codes():
    codes = torch.tensor([[0, 1], [0, 1], [1, 2], [2, 3]])

    metrics = codebook_metrics(codes, 4)

    assert metrics["usage"] == [0.75, 0.75]
    assert metrics["min_usage"] == 0.75
    assert metrics["collision_rate"] == 0.5
    assert metrics["unique_codes"] == 3
    assert metrics["perplexity"][0] == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))
    assert metrics["perplexity"][1] == pytest.approx(math.exp(-(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))))


def test_codebook_metrics_reconstruction_errors():
    embeddings = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    reconstructions = torch.tensor([[0.0, 1.0], [2.0, 2.0]])

    metrics = codebook_metrics(torch.tensor([[0], [1]]), 2, embeddings=embeddings, reconstructions=reconstructions)

    assert metrics["collision_rate"] == 0.0
    assert metrics["reconstruction_mse"] == pytest.approx(0.25)
    assert metrics["relative_reconstruction_error"] == pytest.approx(1.0 / 4.0)


def test_codebook_metrics_rejects_out_of_range_codes():
    with pytest.raises(ValueError, match=r"codes must lie in \[0, 4\)"):
        codebook_metrics(torch.tensor([[0, 4]]), 4)


def test_plots_are_written(tmp_path, clustered_embeddings):
    model, result = train_mq_tokenizer(clustered_embeddings, tiny_config(), tiny_args(num_train_epochs=3))

    usage_path = plot_codebook_usage(model.encode(clustered_embeddings), 8, tmp_path / "usage.png", title="tiny")
    curve_path = plot_training_curves(result.history, tmp_path / "curves.png")

    for path in (usage_path, curve_path):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="history is empty"):
        plot_training_curves([], tmp_path / "empty.png")


def test_evaluate_reports_reconstruction(clustered_embeddings):
    model, _ = train_mq_tokenizer(clustered_embeddings, tiny_config(), tiny_args(num_train_epochs=40))

    metrics = evaluate_mq_tokenizer(model, clustered_embeddings)

    assert metrics["num_entities"] == 200
    assert len(metrics["usage"]) == 2
    assert 0 < metrics["reconstruction_mse"]
    assert 0 < metrics["relative_reconstruction_error"] < 1


def test_dead_unit_fractions_find_dead_relus(clustered_embeddings):
    model = MQTokenizer(tiny_config())
    model.set_input_statistics(clustered_embeddings)

    fractions = dead_unit_fractions(model, clustered_embeddings)
    assert len(fractions) == model.config.num_codebooks
    assert all(len(layers) == len(model.encoders[0].layers) - 1 for layers in fractions)

    # A large negative bias turns every unit of the first hidden layer of encoder 0 off for every row.
    with torch.no_grad():
        model.encoders[0].layers[0].bias.fill_(-1e4)
    fractions = dead_unit_fractions(model, clustered_embeddings)
    assert fractions[0][0] == 1.0
    assert fractions[1][0] < 1.0
