"""The masked vector-quantized tokenizer (MQ-Tokenizer) of TokenRec, as a `PreTrainedModel`.

The TokenRec paper (Qu et al.) tokenizes a user or item by quantizing its collaborative embedding q:

- masking: q' = Mask(q, E) with E ~ Bernoulli(rho) drawn per element, only in training;
- K-way encoder: a_k = MLP_k(q') for k = 1..K, each MLP with three hidden layers;
- K-way codebook: w_k = argmin_l ||a_k - c^k_l||^2, the entity's K ID tokens;
- K-to-1 decoder: r = MLP(1/K * sum_k c^k_{w_k});
- loss: ||q - r||^2 + sum_k ||sg[a_k] - c^k_{w_k}||^2 + beta * sum_k ||a_k - sg[c^k_{w_k}]||^2, with a straight-through
  estimator that passes the gradient at the decoder input on to the encoder outputs.

NOTE: departures from the paper. Every squared norm is averaged over its dimensions (a mean squared error), which only
rescales the loss. With `standardize_inputs=True` (the default) the inputs are standardized per dimension with
training-set statistics and the reconstruction loss is measured in that standardized space. Codebooks are initialized
by k-means on encoder outputs and dead codewords are restarted during training (see `train_mq_tokenizer`); the paper
does not say how it initializes them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.activations import ACT2FN
from transformers.utils import ModelOutput, logging

from ..utils.io import atomic_directory
from .configuration_mq_tokenizer import MQTokenizerConfig
from .kmeans import kmeans, squared_distances

logger = logging.get_logger(__name__)


@dataclass
class MQTokenizerOutput(ModelOutput):
    r"""
    Output of [`MQTokenizer.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            reconstruction_loss + codebook_loss + beta * commitment_loss.
        reconstruction_loss (`torch.FloatTensor` of shape `()`):
            Mean squared error between the unmasked input and the reconstruction.
        codebook_loss (`torch.FloatTensor` of shape `()`):
            Sum over codebooks of the mean squared error that pulls the chosen codewords toward the (detached) encoder
            outputs.
        commitment_loss (`torch.FloatTensor` of shape `()`):
            Sum over codebooks of the mean squared error that pulls the encoder outputs toward the (detached) codewords.
        codes (`torch.LongTensor` of shape `(batch_size, num_codebooks)`):
            The chosen codeword index in each codebook.
        reconstruction (`torch.FloatTensor` of shape `(batch_size, input_dim)`):
            The decoded embeddings, in the input space.
        encoder_outputs (`torch.FloatTensor` of shape `(batch_size, num_codebooks, codebook_dim)`):
            The vectors that were quantized: a_k for the K-way quantizer, the residual at each level for the residual
            one.
    """

    loss: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    codebook_loss: torch.FloatTensor | None = None
    commitment_loss: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    encoder_outputs: torch.FloatTensor | None = None


class MQTokenizerMLP(nn.Module):
    """A stack of linear layers with an activation between them (none after the last layer)."""

    def __init__(self, input_dim: int, hidden_sizes: list[int], output_dim: int, hidden_act: str) -> None:
        super().__init__()
        widths = [input_dim, *hidden_sizes, output_dim]
        self.layers = nn.ModuleList(
            nn.Linear(width_in, width_out) for width_in, width_out in zip(widths[:-1], widths[1:], strict=True)
        )
        self.activation = ACT2FN[hidden_act]

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            hidden_states = layer(hidden_states)
            if index < len(self.layers) - 1:
                hidden_states = self.activation(hidden_states)
        return hidden_states


class MQTokenizerPreTrainedModel(PreTrainedModel):
    """Weight initialization and loading glue shared by MQ-Tokenizer models."""

    config_class = MQTokenizerConfig
    base_model_prefix = "mq_tokenizer"
    main_input_name = "embeddings"
    _supports_sdpa = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.kaiming_uniform_(module.weight, a=5**0.5)
            if module.bias is not None:
                bound = 1 / module.weight.shape[1] ** 0.5
                nn.init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, MQTokenizer):
            limit = self.config.initializer_range
            nn.init.uniform_(module.codebooks, -limit, limit)
            module.input_mean.zero_()
            module.input_scale.fill_(1.0)
            module.codebooks_initialized.zero_()


class MQTokenizer(MQTokenizerPreTrainedModel):
    r"""
    Masked vector-quantized tokenizer: maps an embedding to `num_codebooks` discrete codes and back.

    Use [`train_mq_tokenizer`] to fit it, [`~MQTokenizer.encode`] to tokenize embeddings (also those of users or items
    that were never seen in training) and [`~MQTokenizer.decode`] to map codes back to embeddings.

    Args:
        config ([`MQTokenizerConfig`]): The tokenizer's sizes and loss settings.
    """

    def __init__(self, config: MQTokenizerConfig) -> None:
        super().__init__(config)
        num_encoders = config.num_codebooks if config.quantizer == "kway" else 1
        self.encoders = nn.ModuleList(
            MQTokenizerMLP(config.input_dim, config.encoder_hidden_sizes, config.codebook_dim, config.hidden_act)
            for _ in range(num_encoders)
        )
        self.codebooks = nn.Parameter(torch.empty(config.num_codebooks, config.codebook_size, config.codebook_dim))
        self.decoder = MQTokenizerMLP(
            config.codebook_dim, config.decoder_hidden_sizes, config.input_dim, config.hidden_act
        )

        # Per-dimension standardization statistics of the training embeddings, and whether k-means has run.
        self.register_buffer("input_mean", torch.zeros(config.input_dim))
        self.register_buffer("input_scale", torch.ones(config.input_dim))
        self.register_buffer("codebooks_initialized", torch.zeros((), dtype=torch.bool))

        self.post_init()

    # Input handling.

    def _check_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        if not isinstance(embeddings, torch.Tensor):
            embeddings = torch.as_tensor(embeddings)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.config.input_dim:
            raise ValueError(
                f"Expected embeddings of shape [N, {self.config.input_dim}] (input_dim of this MQ-Tokenizer), got "
                f"shape {tuple(embeddings.shape)}: the embedding dimension {embeddings.shape[-1]} does not match "
                f"input_dim {self.config.input_dim}. Tokenize embeddings from the collaborative model this "
                "tokenizer was trained on, or train a tokenizer with the matching input_dim."
            )
        if not embeddings.is_floating_point():
            embeddings = embeddings.float()
        finite = torch.isfinite(embeddings).all(dim=1)
        if not bool(finite.all()):
            bad_row = int((~finite).nonzero()[0])
            raise ValueError(
                f"Embedding row {bad_row} contains NaN or infinite values ({int((~finite).sum())} bad rows in total). "
                "Fix or drop those rows before tokenizing them."
            )
        return embeddings.to(device=self.codebooks.device, dtype=self.codebooks.dtype)

    @torch.no_grad()
    def set_input_statistics(self, embeddings: torch.Tensor) -> None:
        """Store the per-dimension mean and standard deviation of `embeddings` [N, input_dim] for standardization.

        Has no effect when `config.standardize_inputs` is `False`.
        """
        if not self.config.standardize_inputs:
            return
        embeddings = self._check_embeddings(embeddings)
        self.input_mean.copy_(embeddings.mean(dim=0))
        scale = embeddings.std(dim=0, unbiased=False) if embeddings.shape[0] > 1 else torch.ones_like(self.input_scale)
        self.input_scale.copy_(torch.where(scale > 1e-8, scale, torch.ones_like(scale)))

    def standardize(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Map input embeddings into the space the encoders read (identity without standardization)."""
        return (embeddings - self.input_mean) / self.input_scale

    def unstandardize(self, values: torch.Tensor) -> torch.Tensor:
        """Map decoder outputs back to the input embedding space."""
        return values * self.input_scale + self.input_mean

    def mask_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """Zero each element of a copy of `inputs` with probability `mask_ratio`, drawing a fresh mask on every call."""
        if self.config.mask_ratio <= 0:
            return inputs
        keep = torch.rand_like(inputs) >= self.config.mask_ratio
        return inputs * keep

    # Quantization.

    def encode_latents(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the encoders on standardized inputs [N, input_dim]; returns [N, num_encoders, codebook_dim]."""
        return torch.stack([encoder(inputs) for encoder in self.encoders], dim=1)

    def quantize(self, latents: torch.Tensor) -> tuple[torch.LongTensor, torch.Tensor, torch.Tensor]:
        """Snap encoder outputs to their nearest codewords (Euclidean distance).

        Args:
            latents: Encoder outputs, [N, K, codebook_dim] for the K-way quantizer or [N, 1, codebook_dim] for the
                residual one.

        Returns:
            `(codes, codewords, quantized_inputs)`: codes [N, K], the chosen codewords [N, K, codebook_dim], and the
            vectors that were quantized at each codebook [N, K, codebook_dim] (the encoder outputs, or the residuals).
        """
        if self.config.quantizer == "kway":
            codes = torch.stack(
                [squared_distances(latents[:, k], self.codebooks[k]).argmin(dim=1) for k in range(latents.shape[1])],
                dim=1,
            )
            codewords = torch.stack([self.codebooks[k][codes[:, k]] for k in range(codes.shape[1])], dim=1)
            return codes, codewords, latents

        residual = latents[:, 0]
        codes, codewords, residuals = [], [], []
        for k in range(self.config.num_codebooks):
            residuals.append(residual)
            code = squared_distances(residual, self.codebooks[k]).argmin(dim=1)
            codeword = self.codebooks[k][code]
            codes.append(code)
            codewords.append(codeword)
            residual = residual - codeword.detach()
        return torch.stack(codes, dim=1), torch.stack(codewords, dim=1), torch.stack(residuals, dim=1)

    def pool_codewords(self, codewords: torch.Tensor) -> torch.Tensor:
        """Combine the K codewords [N, K, codebook_dim] into the decoder input: their mean (K-way) or sum (residual)."""
        return codewords.mean(dim=1) if self.config.quantizer == "kway" else codewords.sum(dim=1)

    # Model API.

    def forward(self, embeddings: torch.FloatTensor, return_dict: bool | None = None) -> MQTokenizerOutput | tuple:
        r"""
        Tokenize and reconstruct a batch of embeddings, and compute the MQ-Tokenizer loss.

        In training mode the encoders read a masked copy of the input; the reconstruction target is always the
        unmasked input.

        Args:
            embeddings (`torch.FloatTensor` of shape `(batch_size, input_dim)`):
                Collaborative embeddings of users or items.
            return_dict (`bool`, *optional*):
                Return an [`MQTokenizerOutput`] rather than a tuple. Defaults to `config.return_dict`.

        Returns:
            [`MQTokenizerOutput`] or `tuple`: the losses, codes, reconstruction and quantized vectors.
        """
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        embeddings = self._check_embeddings(embeddings)

        targets = self.standardize(embeddings)
        inputs = self.mask_inputs(targets) if self.training else targets
        latents = self.encode_latents(inputs)
        codes, codewords, quantized_inputs = self.quantize(latents)

        # Straight-through estimator: the decoder receives the codewords, and its gradient flows to the encoder outputs.
        if self.config.quantizer == "kway":
            decoder_inputs = self.pool_codewords(latents + (codewords - latents).detach())
        else:
            encoded = latents[:, 0]
            decoder_inputs = encoded + (self.pool_codewords(codewords) - encoded).detach()
        decoded = self.decoder(decoder_inputs)

        reconstruction_loss = F.mse_loss(decoded, targets)
        codebook_loss = (codewords - quantized_inputs.detach()).pow(2).mean(dim=(0, 2)).sum()
        if self.config.quantizer == "kway":
            commitment_loss = (latents - codewords.detach()).pow(2).mean(dim=(0, 2)).sum()
        else:
            # RQ-VAE commitment: the encoder output against the partial sums of the chosen codewords.
            partial_sums = codewords.detach().cumsum(dim=1)
            commitment_loss = (latents - partial_sums).pow(2).mean(dim=(0, 2)).sum()
        loss = reconstruction_loss + codebook_loss + self.config.beta * commitment_loss

        output = MQTokenizerOutput(
            loss=loss,
            reconstruction_loss=reconstruction_loss,
            codebook_loss=codebook_loss,
            commitment_loss=commitment_loss,
            codes=codes,
            reconstruction=self.unstandardize(decoded),
            encoder_outputs=quantized_inputs,
        )
        return output if return_dict else output.to_tuple()

    @torch.no_grad()
    def encode(self, embeddings: torch.Tensor, batch_size: int = 8192) -> torch.LongTensor:
        r"""
        Tokenize embeddings into codes, without masking, whatever mode the model is in.

        Args:
            embeddings (`torch.Tensor` of shape `(N, input_dim)`):
                Embeddings of users or items, including ones never seen in training.
            batch_size (`int`, *optional*, defaults to 8192):
                Rows encoded at once.

        Returns:
            `torch.LongTensor` of shape `(N, num_codebooks)`: codeword indices, each in `[0, codebook_size)`.

        Raises:
            ValueError: When the width differs from `config.input_dim` or a row contains NaN or infinity.
        """
        embeddings = self._check_embeddings(embeddings)
        codes = []
        for start in range(0, embeddings.shape[0], batch_size):
            inputs = self.standardize(embeddings[start : start + batch_size])
            codes.append(self.quantize(self.encode_latents(inputs))[0])
        if not codes:
            return torch.empty(0, self.config.num_codebooks, dtype=torch.long, device=self.codebooks.device)
        return torch.cat(codes, dim=0)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.FloatTensor:
        r"""
        Reconstruct embeddings from codes.

        Args:
            codes (`torch.LongTensor` of shape `(N, num_codebooks)`): Codeword indices, each in `[0, codebook_size)`.

        Returns:
            `torch.FloatTensor` of shape `(N, input_dim)`: the decoded embeddings in the input space.

        Raises:
            ValueError: When the shape or a code is out of range.
        """
        codes = torch.as_tensor(codes, device=self.codebooks.device)
        if codes.ndim != 2 or codes.shape[1] != self.config.num_codebooks or codes.is_floating_point():
            raise ValueError(
                f"Expected integer codes of shape [N, {self.config.num_codebooks}] (num_codebooks), got "
                f"{codes.dtype} of shape {tuple(codes.shape)}."
            )
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.config.codebook_size):
            raise ValueError(
                f"Codes must lie in [0, {self.config.codebook_size}) (codebook_size), got values from "
                f"{int(codes.min())} to {int(codes.max())}."
            )
        codewords = torch.stack([self.codebooks[k][codes[:, k]] for k in range(codes.shape[1])], dim=1)
        return self.unstandardize(self.decoder(self.pool_codewords(codewords)))

    @torch.no_grad()
    def initialize_codebooks(
        self, embeddings: torch.Tensor, num_iterations: int = 25, generator: torch.Generator | None = None
    ) -> None:
        r"""
        Set every codebook to the k-means centers of the (unmasked) vectors it quantizes.

        For the K-way quantizer, codebook k clusters the outputs of encoder k. For the residual quantizer, codebook k
        clusters the residuals left after codebooks 1..k-1.

        Args:
            embeddings (`torch.Tensor` of shape `(N, input_dim)`): A sample of training embeddings.
            num_iterations (`int`, *optional*, defaults to 25): Lloyd iterations per codebook.
            generator (`torch.Generator`, *optional*): Random generator for the k-means seeding.
        """
        embeddings = self._check_embeddings(embeddings)
        if embeddings.shape[0] < self.config.codebook_size:
            logger.warning(
                f"k-means initialization got {embeddings.shape[0]} embeddings for {self.config.codebook_size} "
                "codewords per codebook; some codewords start as copies and rely on dead-codeword restarts."
            )
        latents = self.encode_latents(self.standardize(embeddings))

        if self.config.quantizer == "kway":
            for k in range(self.config.num_codebooks):
                self.codebooks[k].copy_(kmeans(latents[:, k], self.config.codebook_size, num_iterations, generator))
        else:
            residual = latents[:, 0]
            for k in range(self.config.num_codebooks):
                self.codebooks[k].copy_(kmeans(residual, self.config.codebook_size, num_iterations, generator))
                code = squared_distances(residual, self.codebooks[k]).argmin(dim=1)
                residual = residual - self.codebooks[k][code]
        self.codebooks_initialized.fill_(True)

    def save_pretrained(self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> None:
        r"""
        Save `config.json` and `model.safetensors` to `save_directory`, atomically.

        The files are written to a temporary sibling folder that replaces `save_directory` only once complete, so an
        interrupted save leaves the previous artifact intact. Other keyword arguments go to
        `PreTrainedModel.save_pretrained` (and to `push_to_hub` when `push_to_hub=True`).
        """
        hub_kwargs = {
            name: kwargs.pop(name) for name in ("repo_id", "commit_message", "token", "private") if name in kwargs
        }
        with atomic_directory(save_directory) as staging:
            super().save_pretrained(staging, **kwargs)
        if push_to_hub:
            repo_id = hub_kwargs.pop("repo_id", Path(save_directory).name)
            self.push_to_hub(repo_id, **hub_kwargs)

    @torch.no_grad()
    def reset_codewords(self, codebook_index: int, codeword_indices: torch.Tensor, vectors: torch.Tensor) -> None:
        """Overwrite codewords `codeword_indices` of codebook `codebook_index` with `vectors` [n, codebook_dim]."""
        self.codebooks[codebook_index, codeword_indices] = vectors.to(self.codebooks.dtype)


__all__ = ["MQTokenizer", "MQTokenizerOutput", "MQTokenizerPreTrainedModel"]
