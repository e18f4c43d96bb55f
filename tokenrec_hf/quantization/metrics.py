"""Codebook health metrics for MQ-Tokenizers: reconstruction error, codeword usage, perplexity and code collisions."""

from __future__ import annotations

from typing import Any

import torch


def codebook_metrics(
    codes: torch.Tensor,
    codebook_size: int,
    *,
    embeddings: torch.Tensor | None = None,
    reconstructions: torch.Tensor | None = None,
) -> dict[str, Any]:
    r"""
    Measure how well a set of codes uses its codebooks and how often entities share a whole code.

    Args:
        codes (`torch.LongTensor` of shape `(N, K)`):
            The K codeword indices of each of N entities.
        codebook_size (`int`):
            L, the number of codewords per codebook.
        embeddings (`torch.Tensor` of shape `(N, d)`, *optional*):
            The original embeddings; with `reconstructions`, adds the reconstruction errors.
        reconstructions (`torch.Tensor` of shape `(N, d)`, *optional*):
            The decoded embeddings.

    Returns:
        `dict`: with keys
        - `num_entities`: N.
        - `usage`: per codebook, the fraction of its L codewords that at least one entity uses.
        - `min_usage`, `mean_usage`: the lowest and the mean of `usage`.
        - `perplexity`: per codebook, exp of the entropy of the codeword distribution (L when uniform, 1 when one
          codeword takes every entity).
        - `min_perplexity`: the lowest of `perplexity`.
        - `unique_codes`: the number of distinct K-token codes.
        - `collision_rate`: the share of entities whose whole K-token code is shared with at least one other entity.
        - `reconstruction_mse` and `relative_reconstruction_error` (only with embeddings and reconstructions): the mean
          squared error per element, and the summed squared error divided by the summed squared deviation of the
          embeddings from their mean (0 is perfect, 1 is no better than predicting the mean).

    Raises:
        ValueError: When `codes` is not a 2-D integer tensor with values in `[0, codebook_size)`, or the embeddings and
            reconstructions do not match.
    """
    codes = torch.as_tensor(codes)
    if codes.ndim != 2 or codes.is_floating_point():
        raise ValueError(f"codes must be an integer tensor of shape [N, K], got {codes.dtype} {tuple(codes.shape)}.")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ValueError(
            f"codes must lie in [0, {codebook_size}) (codebook_size), got values from {int(codes.min())} to "
            f"{int(codes.max())}. Pass the codebook_size of the tokenizer that produced them."
        )
    codes = codes.long().cpu()
    num_entities, num_codebooks = codes.shape

    usage, perplexity = [], []
    for k in range(num_codebooks):
        counts = torch.bincount(codes[:, k], minlength=codebook_size).double()
        usage.append(float((counts > 0).sum()) / codebook_size)
        probabilities = counts[counts > 0] / max(num_entities, 1)
        perplexity.append(float(torch.exp(-(probabilities * probabilities.log()).sum())) if num_entities else 0.0)

    if num_entities:
        _, inverse, group_sizes = torch.unique(codes, dim=0, return_inverse=True, return_counts=True)
        collision_rate = float((group_sizes[inverse] > 1).double().mean())
        unique_codes = len(group_sizes)
    else:
        collision_rate, unique_codes = 0.0, 0

    metrics: dict[str, Any] = {
        "num_entities": num_entities,
        "usage": usage,
        "min_usage": min(usage) if usage else 0.0,
        "mean_usage": sum(usage) / len(usage) if usage else 0.0,
        "perplexity": perplexity,
        "min_perplexity": min(perplexity) if perplexity else 0.0,
        "unique_codes": unique_codes,
        "collision_rate": collision_rate,
    }

    if embeddings is not None and reconstructions is not None:
        embeddings = torch.as_tensor(embeddings).double().cpu()
        reconstructions = torch.as_tensor(reconstructions).double().cpu()
        if embeddings.shape != reconstructions.shape or embeddings.shape[0] != num_entities:
            raise ValueError(
                f"embeddings {tuple(embeddings.shape)} and reconstructions {tuple(reconstructions.shape)} must have "
                f"the same shape, with one row per code ({num_entities} rows)."
            )
        squared_error = (embeddings - reconstructions).pow(2)
        spread = (embeddings - embeddings.mean(dim=0)).pow(2).sum()
        metrics["reconstruction_mse"] = float(squared_error.mean())
        metrics["relative_reconstruction_error"] = float(squared_error.sum() / spread) if spread > 0 else 0.0

    return metrics


@torch.no_grad()
def evaluate_mq_tokenizer(model: Any, embeddings: torch.Tensor, batch_size: int = 8192) -> dict[str, Any]:
    r"""
    Encode `embeddings` with `model`, decode the codes, and return [`codebook_metrics`] with reconstruction errors.

    Args:
        model ([`MQTokenizer`]): The tokenizer to evaluate (no masking is applied).
        embeddings (`torch.Tensor` of shape `(N, input_dim)`): The embeddings to tokenize.
        batch_size (`int`, *optional*, defaults to 8192): Rows encoded and decoded at once.

    Returns:
        `dict`: the output of [`codebook_metrics`], reconstruction errors included.
    """
    codes = model.encode(embeddings, batch_size=batch_size)
    reconstructions = torch.cat(
        [model.decode(codes[start : start + batch_size]) for start in range(0, codes.shape[0], batch_size)]
    )
    return codebook_metrics(
        codes, model.config.codebook_size, embeddings=torch.as_tensor(embeddings), reconstructions=reconstructions
    )


@torch.no_grad()
def dead_unit_fractions(model: Any, embeddings: torch.Tensor) -> list[list[float]]:
    r"""
    Measure, for each encoder's hidden layers, the fraction of units whose activation is zero for every row.

    With ReLU, a unit that outputs zero for every input gets no gradient and stays off ("dies"). When most units of a
    layer die, the encoder outputs nearly the same vector for every entity, and its codebook collapses to one
    codeword.

    Args:
        model ([`MQTokenizer`]): The tokenizer to inspect.
        embeddings (`torch.Tensor` of shape `(N, input_dim)`): The rows to run through the encoders, unmasked.

    Returns:
        `list[list[float]]`: per encoder, one fraction per hidden layer.
    """
    model.eval()
    inputs = model.standardize(torch.as_tensor(embeddings, dtype=torch.float32))
    fractions = []
    for encoder in model.encoders:
        hidden_states, per_layer = inputs, []
        for layer in encoder.layers[:-1]:
            hidden_states = encoder.activation(layer(hidden_states))
            per_layer.append(float((hidden_states == 0).all(dim=0).float().mean()))
        fractions.append(per_layer)
    return fractions


__all__ = ["codebook_metrics", "dead_unit_fractions", "evaluate_mq_tokenizer"]
