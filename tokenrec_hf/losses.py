"""Retrieval losses for TokenRec: the cosine margin loss that aligns generated queries with item representations."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class CosineMarginLossOutput:
    """
    The cosine margin loss and its two parts.

    Args:
        loss: Mean of the per-pair losses over all positive and negative pairs, a scalar.
        positive_loss: Mean of `1 - cos(z, q+)` over the positive pairs, a scalar.
        negative_loss: Mean of `max(0, cos(z, q-) - margin)` over the negative pairs, a scalar (0 without negatives).
    """

    loss: torch.Tensor
    positive_loss: torch.Tensor
    negative_loss: torch.Tensor


class CosineMarginLoss(nn.Module):
    r"""
    Pairwise cosine loss with a margin on negative pairs, the fine-tuning objective of TokenRec (Eq. 20):

    - positive pair (the user interacted with the item): `1 - cos(z, q+)`
    - negative pair: `max(0, cos(z, q-) - margin)`

    A negative pair whose similarity is already below the margin costs nothing, so training focuses on the hard
    negatives. With `n` negatives per positive, the loss is the mean over all `B * (1 + n)` pairs, which matches
    `torch.nn.CosineEmbeddingLoss` applied to the same pairs with targets `+1` and `-1`.

    Args:
        margin (`float`, *optional*, defaults to 0.1):
            The margin `gamma` in [-1, 1]. The TokenRec paper searches 0 to 0.2.
        eps (`float`, *optional*, defaults to 1e-8):
            Lower bound of the vector norms in the cosine, so that a zero vector gives cosine 0 instead of NaN.

    Inputs:
        - `query_embeddings`: `[B, d]` generated item representations `z` (the model's queries).
        - `positive_embeddings`: `[B, d]` collaborative representations `q+` of each query's positive item.
        - `negative_embeddings` (optional): `[B, n, d]` representations `q-` of `n` negative items per query, or
          `[B, d]` for one negative each.

    Returns:
        [`CosineMarginLossOutput`] with `loss`, `positive_loss` and `negative_loss`.

    Raises:
        ValueError: The inputs' shapes do not match.

    References:
        Qu et al., "Learning to Tokenize ID for LLM-based Generative Recommendations" (TokenRec), Eq. 20.

    Example:

    ```python
    >>> import torch
    >>> from tokenrec_hf.losses import CosineMarginLoss

    >>> loss_fct = CosineMarginLoss(margin=0.1)
    >>> z = torch.tensor([[1.0, 0.0]])
    >>> positives = torch.tensor([[1.0, 0.0]])  # cos = 1, cost 0
    >>> negatives = torch.tensor([[[0.6, 0.8]]])  # cos = 0.6, cost 0.6 - 0.1 = 0.5
    >>> output = loss_fct(z, positives, negatives)
    >>> round(output.loss.item(), 4)  # mean over the two pairs
    0.25
    ```
    """

    def __init__(self, margin: float = 0.1, eps: float = 1e-8) -> None:
        super().__init__()
        if not -1.0 <= margin <= 1.0:
            raise ValueError(f"margin={margin} is invalid: it is compared with a cosine, so it must be in [-1, 1].")
        self.margin = float(margin)
        self.eps = eps

    def forward(
        self,
        query_embeddings: torch.Tensor,
        positive_embeddings: torch.Tensor,
        negative_embeddings: torch.Tensor | None = None,
    ) -> CosineMarginLossOutput:
        if query_embeddings.dim() != 2:
            raise ValueError(f"query_embeddings must be [batch, dim], got shape {tuple(query_embeddings.shape)}.")
        if positive_embeddings.shape != query_embeddings.shape:
            raise ValueError(
                f"positive_embeddings has shape {tuple(positive_embeddings.shape)}; expected the shape of "
                f"query_embeddings {tuple(query_embeddings.shape)}."
            )

        positive_cosine = F.cosine_similarity(query_embeddings, positive_embeddings, dim=-1, eps=self.eps)  # [B]
        positive_costs = 1.0 - positive_cosine  # [B]
        positive_loss = positive_costs.mean()

        if negative_embeddings is None:
            zero = positive_loss.new_zeros(())
            return CosineMarginLossOutput(loss=positive_loss, positive_loss=positive_loss, negative_loss=zero)

        if negative_embeddings.dim() == 2:
            negative_embeddings = negative_embeddings.unsqueeze(1)  # [B, 1, d]
        batch_size, dim = query_embeddings.shape
        if (
            negative_embeddings.dim() != 3
            or negative_embeddings.shape[0] != batch_size
            or negative_embeddings.shape[2] != dim
        ):
            raise ValueError(
                f"negative_embeddings has shape {tuple(negative_embeddings.shape)}; expected [{batch_size}, n, {dim}] "
                "(n negatives per query) or [batch, dim]."
            )

        negative_cosine = F.cosine_similarity(
            query_embeddings.unsqueeze(1), negative_embeddings, dim=-1, eps=self.eps
        )  # [B, n]
        negative_costs = torch.clamp(negative_cosine - self.margin, min=0.0)  # [B, n]
        negative_loss = negative_costs.mean()

        num_pairs = positive_costs.numel() + negative_costs.numel()
        loss = (positive_costs.sum() + negative_costs.sum()) / num_pairs
        return CosineMarginLossOutput(loss=loss, positive_loss=positive_loss, negative_loss=negative_loss)

    def extra_repr(self) -> str:
        return f"margin={self.margin}"


__all__ = ["CosineMarginLoss", "CosineMarginLossOutput"]
