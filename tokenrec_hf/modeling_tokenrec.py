"""TokenRec generative retrieval model: a T5 backbone, a projection head and a cosine top-K over the item table.

The model reads a prompt whose users and items are written as ID tokens, pools the backbone's output into one hidden
state `h_i` (Eq. 17 of the TokenRec paper by Qu et al.), projects it with a three-layer MLP to `z_i` (Eq. 18) and
scores every catalog item by the cosine between `z_i` and the item's collaborative representation `q_j` (Eq. 19).
Training minimizes the cosine margin loss of Eq. 20. Recommendation is one forward pass and a top-K: no
autoregressive decoding.

NOTE: departures from the paper. The paper does not say which hidden state is `h_i`. This implementation offers the
mean of the encoder states over non-padding tokens (`query_pooling="encoder_mean"`, the default) and the decoder's
last hidden state for a one-token decoder input (`"decoder"`). The projection MLP's hidden widths and activation are configurable because
the paper gives only its depth (three layers).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel, T5Config, T5EncoderModel, T5Model
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_tokenrec import TokenRecConfig
from .evaluation import full_ranking_top_k
from .losses import CosineMarginLoss
from .modelcard import TokenRecModelCardData, load_model_card_data, write_model_card
from .prompts import format_prompt, make_rng, select_history, template_uses_history, validate_template
from .utils import HubUnreachableError, atomic_directory, resolve_pretrained_folder

logger = logging.get_logger(__name__)

MODEL_WEIGHTS_NAME = "model.safetensors"
RANDOM_WEIGHTS_HINT = (
    "To train from random weights instead, pass a T5Config, for example "
    "`TokenRecForRetrieval.from_backbone(T5Config.from_pretrained('/path/to/t5-folder'), tokenizer, item_embeddings)`."
)


@dataclass
class TokenRecRetrievalOutput(ModelOutput):
    """
    Output of [`TokenRecForRetrieval.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*):
            Cosine margin loss over all positive and negative pairs, returned when `positive_item_ids` is given.
        query_embeddings (`torch.FloatTensor` of shape `(batch_size, collaborative_dim)`):
            The generated item representations `z` (the retrieval queries).
        scores (`torch.FloatTensor` of shape `(batch_size, num_items)`, *optional*):
            Cosine similarity of each query with every row of the item table, returned with `return_scores=True`.
        positive_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Mean of `1 - cos(z, q+)` over the positive pairs.
        negative_loss (`torch.FloatTensor` of shape `()`, *optional*):
            Mean of `max(0, cos(z, q-) - margin)` over the negative pairs.
    """

    loss: torch.FloatTensor | None = None
    query_embeddings: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    positive_loss: torch.FloatTensor | None = None
    negative_loss: torch.FloatTensor | None = None


@dataclass
class TokenRecRecommendations:
    """
    Top-K recommendations for a batch of users, best first.

    Args:
        item_ids: Raw catalog item ids, one list of `top_k` per user.
        scores: `[num_users, top_k]` cosine similarities of the recommended items.
        item_indices: `[num_users, top_k]` rows of the item table (internal item indices).
    """

    item_ids: list[list[str]]
    scores: torch.Tensor
    item_indices: torch.Tensor = field(repr=False)


class TokenRecProjection(nn.Module):
    """The three-layer MLP `Proj` that maps a pooled hidden state `h` to the query `z` (Eq. 18)."""

    def __init__(self, config: TokenRecConfig) -> None:
        super().__init__()
        first, second = config.projection_hidden_sizes
        activation = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}[config.projection_activation]
        self.layers = nn.Sequential(
            nn.Linear(config.backbone_config.d_model, first),
            activation(),
            nn.Dropout(config.projection_dropout),
            nn.Linear(first, second),
            activation(),
            nn.Dropout(config.projection_dropout),
            nn.Linear(second, config.collaborative_dim),
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.layers(hidden_states)


class TokenRecPreTrainedModel(PreTrainedModel):
    """Base class that ties TokenRec models to [`TokenRecConfig`] and initializes the projection head."""

    config_class = TokenRecConfig
    config: TokenRecConfig
    base_model_prefix = "backbone"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _no_split_modules = ["T5Block"]
    _supports_sdpa = True
    # T5 ties both embedding tables to `shared`, so the checkpoint stores only `shared`.
    _tied_weights_keys = {
        "backbone.encoder.embed_tokens.weight": "backbone.shared.weight",
        "backbone.decoder.embed_tokens.weight": "backbone.shared.weight",
    }

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """Initialize the head: Xavier-uniform weights and zero biases. The T5 backbone initializes itself."""
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, TokenRecForRetrieval):
            init.zeros_(module.item_embeddings)


class TokenRecForRetrieval(TokenRecPreTrainedModel):
    r"""
    TokenRec for generative retrieval: prompt -> T5 -> pooled state -> projection MLP -> cosine top-K over items.

    The item table `item_embeddings` (`[num_items, collaborative_dim]`, a buffer saved with the model) is the
    retrieval index: the collaborative item representations from LightGCN or MF. It is not trained. New items join
    with [`~TokenRecForRetrieval.add_item_embeddings`] without retraining the backbone.

    Args:
        config ([`TokenRecConfig`]): The model configuration. Weights are randomly initialized; use
            [`~TokenRecForRetrieval.from_backbone`] to start from a pretrained T5, or `from_pretrained` to load a
            saved TokenRec model.

    Example:

    ```python
    >>> from transformers import T5Config
    >>> from tokenrec_hf.configuration_tokenrec import TokenRecConfig
    >>> from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval

    >>> backbone = T5Config(vocab_size=400, d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8)
    >>> model = TokenRecForRetrieval(TokenRecConfig(backbone_config=backbone, projection_hidden_sizes=(64, 64)))
    >>> model.set_item_embeddings(torch.randn(100, 64))
    >>> output = model(input_ids=torch.tensor([[5, 6, 7, 1]]), return_scores=True)
    >>> output.scores.shape
    torch.Size([1, 100])
    ```
    """

    def __init__(self, config: TokenRecConfig) -> None:
        super().__init__(config)

        backbone_class = T5EncoderModel if config.query_pooling == "encoder_mean" else T5Model
        self.backbone = backbone_class(config.backbone_config)
        self.projection = TokenRecProjection(config)
        self.register_buffer(
            "item_embeddings", torch.zeros(config.num_items, config.collaborative_dim), persistent=True
        )
        self.loss_fct = CosineMarginLoss(margin=config.margin)
        self.model_card_data = TokenRecModelCardData()

        self.post_init()

    # ------------------------------------------------------------------ embeddings and item table

    def get_input_embeddings(self) -> nn.Module:
        return self.backbone.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.backbone.set_input_embeddings(value)

    def resize_token_embeddings(
        self, new_num_tokens: int | None = None, pad_to_multiple_of: int | None = None, mean_resizing: bool = True
    ) -> nn.Embedding:
        """Resize the backbone's token embedding and keep `config.vocab_size` equal to its row count."""
        embeddings = self.backbone.resize_token_embeddings(
            new_num_tokens, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=mean_resizing
        )
        self.config.vocab_size = embeddings.weight.shape[0]
        self.config.backbone_config.vocab_size = embeddings.weight.shape[0]
        return embeddings

    @torch.no_grad()
    def set_item_embeddings(self, item_embeddings: torch.Tensor) -> None:
        """
        Replace the item table (the retrieval index) and set `config.num_items` to its row count.

        Args:
            item_embeddings: `[num_items, collaborative_dim]` collaborative item representations, row `j` for the
                internal item index `j` (the tokenizer's `item_ids[j]`).

        Raises:
            ValueError: The table is not 2-D, has the wrong width, or contains NaN or infinite values.
        """
        table = self._check_item_rows(item_embeddings, "item_embeddings")
        self.item_embeddings = table.to(device=self.item_embeddings.device, dtype=self.item_embeddings.dtype)
        self.config.num_items = table.shape[0]

    @torch.no_grad()
    def add_item_embeddings(self, item_embeddings: torch.Tensor) -> None:
        """
        Append rows for new items to the item table, so they can be recommended without retraining the model.

        The new items get the internal indices `num_items, num_items + 1, ...` in order. Add them to the tokenizer
        with `TokenRecTokenizer.add_items` in the same order so that the raw ids line up.

        Args:
            item_embeddings: `[num_new_items, collaborative_dim]` collaborative representations of the new items.

        Raises:
            ValueError: The rows are not 2-D, have the wrong width, or contain NaN or infinite values.
        """
        rows = self._check_item_rows(item_embeddings, "new item_embeddings")
        rows = rows.to(device=self.item_embeddings.device, dtype=self.item_embeddings.dtype)
        self.item_embeddings = torch.cat([self.item_embeddings, rows], dim=0)
        self.config.num_items = self.item_embeddings.shape[0]

    def _check_item_rows(self, table: torch.Tensor, name: str) -> torch.Tensor:
        if not isinstance(table, torch.Tensor):
            table = torch.as_tensor(table)
        if table.dim() != 2 or table.shape[1] != self.config.collaborative_dim:
            raise ValueError(
                f"{name} has shape {tuple(table.shape)}; expected [num_items, {self.config.collaborative_dim}] "
                "(collaborative_dim of this model). Use the item representations of the collaborative model the "
                "tokenizer was built from."
            )
        if not torch.isfinite(table).all():
            bad_row = int((~torch.isfinite(table)).any(dim=1).nonzero()[0])
            raise ValueError(f"{name} row {bad_row} contains NaN or infinite values.")
        return table.detach().float()

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        positive_item_ids: torch.LongTensor | None = None,
        negative_item_ids: torch.LongTensor | None = None,
        return_scores: bool = False,
        inputs_embeds: torch.FloatTensor | None = None,
    ) -> TokenRecRetrievalOutput:
        r"""
        Encode prompts into queries `z`, and compute the loss when positive items are given.

        Args:
            input_ids (`torch.LongTensor` of shape `(batch_size, sequence_length)`):
                Prompt token ids from [`TokenRecTokenizer`].
            attention_mask (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*):
                1 for real tokens, 0 for padding. Defaults to `input_ids != pad_token_id`.
            positive_item_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
                Internal index of each prompt's positive item (the next item the user interacted with).
            negative_item_ids (`torch.LongTensor` of shape `(batch_size, num_negatives)` or `(batch_size,)`, *optional*):
                Internal indices of negative items (outside the user's history).
            return_scores (`bool`, *optional*, defaults to `False`):
                Whether to return the cosine scores against the whole item table.
            inputs_embeds (`torch.FloatTensor` of shape `(batch_size, sequence_length, d_model)`, *optional*):
                Token embeddings to use instead of `input_ids`.

        Returns:
            [`TokenRecRetrievalOutput`]

        Raises:
            ValueError: An item index is outside the item table, or the item table is empty.
        """
        if attention_mask is None and input_ids is not None:
            attention_mask = (input_ids != self.config.backbone_config.pad_token_id).long()

        hidden_states = self._pool(input_ids, attention_mask, inputs_embeds)  # [B, d_model]
        query_embeddings = self.projection(hidden_states)  # [B, collaborative_dim]

        loss = positive_loss = negative_loss = None
        if positive_item_ids is not None:
            positives = self._lookup_items(positive_item_ids, "positive_item_ids")  # [B, collaborative_dim]
            negatives = None
            if negative_item_ids is not None:
                negatives = self._lookup_items(negative_item_ids, "negative_item_ids")  # [B, n, collaborative_dim]
            else:
                logger.warning_once(
                    "forward() got positive_item_ids without negative_item_ids, so the loss has no negative term; "
                    "pass negatives sampled outside each user's history to train TokenRec as in the paper."
                )
            loss_output = self.loss_fct(query_embeddings, positives, negatives)
            loss = loss_output.loss
            positive_loss = loss_output.positive_loss
            negative_loss = loss_output.negative_loss

        scores = self.score_items(query_embeddings) if return_scores else None

        return TokenRecRetrievalOutput(
            loss=loss,
            query_embeddings=query_embeddings,
            scores=scores,
            positive_loss=positive_loss,
            negative_loss=negative_loss,
        )

    def _pool(
        self,
        input_ids: torch.LongTensor | None,
        attention_mask: torch.Tensor | None,
        inputs_embeds: torch.FloatTensor | None,
    ) -> torch.Tensor:
        if self.config.query_pooling == "encoder_mean":
            encoder_states = self.backbone(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds
            ).last_hidden_state  # [B, T, d_model]
            if attention_mask is None:
                return encoder_states.mean(dim=1)
            weights = attention_mask.to(encoder_states.dtype).unsqueeze(-1)  # [B, T, 1]
            return (encoder_states * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)

        batch_size = input_ids.shape[0] if input_ids is not None else inputs_embeds.shape[0]
        device = input_ids.device if input_ids is not None else inputs_embeds.device
        decoder_input_ids = torch.full(
            (batch_size, 1), self.config.decoder_start_token_id, dtype=torch.long, device=device
        )
        decoder_states = self.backbone(
            input_ids=input_ids,
            attention_mask=attention_mask,
            inputs_embeds=inputs_embeds,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
        ).last_hidden_state  # [B, 1, d_model]
        return decoder_states[:, 0]

    def _lookup_items(self, item_ids: torch.Tensor, name: str) -> torch.Tensor:
        num_items = self.item_embeddings.shape[0]
        if num_items == 0:
            raise ValueError(
                f"{name} was given but the item table is empty; call `set_item_embeddings(table)` with the "
                "collaborative item representations first."
            )
        if item_ids.numel() and (item_ids.min() < 0 or item_ids.max() >= num_items):
            bad = item_ids[(item_ids < 0) | (item_ids >= num_items)][0].item()
            raise ValueError(f"{name} contains item index {bad}, outside the item table [0, {num_items}).")
        return self.item_embeddings[item_ids]

    def score_items(self, query_embeddings: torch.Tensor) -> torch.Tensor:
        """Return `[batch, num_items]` cosine similarities between queries and every row of the item table (Eq. 19)."""
        queries = F.normalize(query_embeddings, dim=-1, eps=1e-12)
        items = F.normalize(self.item_embeddings.to(queries.dtype), dim=-1, eps=1e-12)
        return queries @ items.T

    @torch.no_grad()
    def encode_prompts(
        self,
        tokenizer: Any,
        prompts: Sequence[str],
        batch_size: int = 64,
        max_length: int | None = None,
    ) -> torch.Tensor:
        """
        Tokenize prompts and return their queries `z`, `batch_size` prompts per forward pass.

        Args:
            tokenizer: The [`TokenRecTokenizer`] the model was trained with.
            prompts: Prompt strings, for example from `tokenizer.build_prompt`.
            batch_size: Prompts per forward pass.
            max_length: Truncate prompts to this many tokens (default: no truncation).

        Returns:
            `[len(prompts), collaborative_dim]` float tensor on the model's device.
        """
        self.check_tokenizer(tokenizer)
        chunks = []
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start : start + batch_size])
            encoded = tokenizer(
                batch,
                padding=True,
                truncation=max_length is not None,
                max_length=max_length,
                return_tensors="pt",
            )
            output = self(
                input_ids=encoded["input_ids"].to(self.device),
                attention_mask=encoded["attention_mask"].to(self.device),
            )
            chunks.append(output.query_embeddings)
        if not chunks:
            return torch.empty(0, self.config.collaborative_dim, device=self.device)
        return torch.cat(chunks)

    @torch.no_grad()
    def recommend(
        self,
        tokenizer: Any,
        users: Sequence[str | int] | None = None,
        histories: Sequence[Sequence[str | int]] | None = None,
        user_embeddings: torch.Tensor | None = None,
        top_k: int = 20,
        exclude_history: bool = True,
        template: int | str | None = None,
        batch_size: int = 64,
        chunk_size: int = 65536,
        collaborative_model: Any | None = None,
        max_history_tokens: int | None = None,
        seed: int = 0,
    ) -> TokenRecRecommendations:
        """
        Recommend the top-K catalog items for a batch of users: one forward pass per batch and a cosine top-K over
        the item table, scored `chunk_size` items at a time. There is no autoregressive decoding.

        Each user is written into a prompt by their ID tokens, which come from the first of these that applies:

        1. `user_embeddings[i]`, tokenized through the tokenizer's frozen user MQ-Tokenizer (a new user).
        2. `users[i]`, when the tokenizer has codes for that raw id (or index).
        3. `histories[i]`: the user's collaborative embedding is folded in from the history, with
           `collaborative_model.fold_in_users` when given, else as the mean of the history's rows of the item
           table, then tokenized like case 1.

        Args:
            tokenizer: The [`TokenRecTokenizer`] the model was trained with.
            users: Raw user ids (or code-table indices), one per user.
            histories: Each user's past items, raw ids or indices, oldest first. They fill the `{history}`
                placeholder of the prompt and, with `exclude_history=True`, score minus infinity.
            user_embeddings: `[num_users, input_dim]` collaborative embeddings of new users.
            top_k: Items to return per user; at most the number of items that remain after excluding the history.
            exclude_history: Whether history items score minus infinity (never recommended).
            template: Template index or string. Defaults to the first training template that fits: one with
                `{history}` when the user has a history, else one with the user's tokens only.
            batch_size: Prompts per forward pass.
            chunk_size: Items scored at once, which bounds memory at about `batch_size * chunk_size` floats.
            collaborative_model: A `CollaborativeModel` whose `fold_in_users` gives new users their embedding from
                their history (case 3).
            max_history_tokens: Budget of history ID tokens per prompt (see `TokenRecTokenizer.build_prompt`).
            seed: Seed of the history shuffle inside the prompts, so that results are reproducible.

        Returns:
            [`TokenRecRecommendations`] with raw item ids, scores and item-table indices, best first.

        Raises:
            ValueError: No users are given, the inputs have different lengths, the tokenizer does not match the
                model, `top_k` exceeds the items left to recommend, or a user has no user tokens, no embedding and
                an empty history.
            KeyError: A history item is unknown to the tokenizer.
        """
        self.check_tokenizer(tokenizer)
        num_items = self.item_embeddings.shape[0]
        if num_items == 0:
            raise ValueError("The item table is empty; call `set_item_embeddings(table)` before `recommend`.")
        num_users = _count_users(users, histories, user_embeddings)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= num_items:
            raise ValueError(
                f"top_k={top_k!r} is invalid: it must be an integer between 1 and the catalog size {num_items}."
            )

        history_indices = [
            [tokenizer.item_index(item) for item in (histories[row] if histories is not None else [])]
            for row in range(num_users)
        ]
        if exclude_history:
            for row, history in enumerate(history_indices):
                remaining = num_items - len(set(history))
                if remaining < top_k:
                    raise ValueError(
                        f"top_k={top_k} is larger than the {remaining} items left for user {_user_label(users, row)} "
                        f"after excluding their {len(set(history))} history items; lower top_k."
                    )

        user_tokens = self._user_token_strings(tokenizer, users, history_indices, user_embeddings, collaborative_model)
        rng = make_rng(seed)
        prompts = []
        for row in range(num_users):
            template_text = _inference_template(tokenizer, template, has_history=bool(history_indices[row]))
            prompt_history = []
            if template_uses_history(template_text):
                max_items = None if max_history_tokens is None else max_history_tokens // tokenizer.num_item_codebooks
                prompt_history = select_history(history_indices[row], max_items, rng=rng, shuffle=True)
            prompts.append(
                format_prompt(
                    template_text, user_tokens[row], [tokenizer.item_token_string(i) for i in prompt_history]
                )
            )

        was_training = self.training
        self.eval()
        try:
            queries = self.encode_prompts(tokenizer, prompts, batch_size=batch_size)  # [num_users, collaborative_dim]
        finally:
            self.train(was_training)

        # NOTE: ranking runs on CPU because `full_ranking_top_k` builds its running top-k on the CPU.
        scores, indices = full_ranking_top_k(
            queries.float().cpu(),
            self.item_embeddings.float().cpu(),
            top_k,
            history_indices if exclude_history else None,
            similarity="cosine",
            chunk_size=chunk_size,
        )
        item_ids = tokenizer.item_ids
        return TokenRecRecommendations(
            item_ids=[[item_ids[index] for index in row] for row in indices.tolist()],
            scores=scores,
            item_indices=indices,
        )

    def _user_token_strings(
        self,
        tokenizer: Any,
        users: Sequence[str | int] | None,
        history_indices: list[list[int]],
        user_embeddings: torch.Tensor | None,
        collaborative_model: Any | None,
    ) -> list[str]:
        if user_embeddings is not None:
            return tokenizer.encode_new_users(user_embeddings)

        tokens: list[str | None] = []
        for row, history in enumerate(history_indices):
            user = users[row] if users is not None else None
            if user is not None:
                try:
                    tokens.append(tokenizer.user_token_string(user))
                    continue
                except (KeyError, IndexError):
                    pass
            if not history:
                raise ValueError(
                    f"User {_user_label(users, row)} is not in the tokenizer and has an empty history, so it has no "
                    "user ID tokens. Pass user_embeddings for new users, or a non-empty history."
                )
            tokens.append(None)

        new_rows = [row for row, token in enumerate(tokens) if token is None]
        if new_rows:
            new_histories = [history_indices[row] for row in new_rows]
            if collaborative_model is not None:
                embeddings = collaborative_model.fold_in_users(new_histories)
            else:
                # NOTE: without a collaborative model, a new user's embedding is the mean of their history's rows of
                # the item table. This approximates a LightGCN fold-in; pass `collaborative_model` for the real one.
                logger.warning_once(
                    "recommend() folds new users in as the mean of their history's item embeddings; pass "
                    "collaborative_model= to use the collaborative model's fold-in instead."
                )
                embeddings = torch.stack([self.item_embeddings[history].mean(dim=0) for history in new_histories])
            for row, token in zip(new_rows, tokenizer.encode_new_users(embeddings.float().cpu()), strict=True):
                tokens[row] = token
        return [str(token) for token in tokens]

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_backbone(
        cls,
        backbone: str | os.PathLike | T5Config,
        tokenizer: Any,
        item_embeddings: torch.Tensor | None = None,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **config_kwargs: Any,
    ) -> TokenRecForRetrieval:
        """
        Build a TokenRec model around a T5 backbone, with its embeddings resized to the tokenizer's vocabulary.

        Args:
            backbone: A local T5 folder or Hub id with `config.json` and `model.safetensors` (pretrained weights), or
                a `T5Config` (random weights). The T5 token embeddings keep their pretrained rows. The rows of the
                new ID tokens start from the mean and covariance of the old rows and are trained.
            tokenizer: The [`TokenRecTokenizer`]. Its length, codebook counts and sizes, and number of items are
                recorded in the config and checked whenever the model is used with a tokenizer.
            item_embeddings: `[num_items, collaborative_dim]` item table. Without it the table has
                `len(tokenizer.item_ids)` zero rows until [`~TokenRecForRetrieval.set_item_embeddings`] is called.
            revision, cache_dir, token, local_files_only: Passed to the Hub download of `backbone`.
            **config_kwargs: Other [`TokenRecConfig`] fields, such as `query_pooling`, `margin` or `collaborative_dim`.

        Returns:
            [`TokenRecForRetrieval`] in training mode.

        Raises:
            HubUnreachableError: `backbone` is a Hub id that cannot be downloaded (for example, offline).
            FileNotFoundError: The backbone folder has no `model.safetensors`.
        """
        pretrained = not isinstance(backbone, T5Config)
        name_or_path = None
        backbone_weights = None
        if pretrained:
            name_or_path = os.fspath(backbone)
            folder = _resolve_backbone_folder(name_or_path, revision, cache_dir, token, local_files_only)
            backbone_class = T5EncoderModel if config_kwargs.get("query_pooling") == "encoder_mean" else T5Model
            backbone_weights = backbone_class.from_pretrained(folder, use_safetensors=True)
            backbone_config = backbone_weights.config
        else:
            backbone_config = T5Config.from_dict(backbone.to_dict())

        if item_embeddings is not None and "collaborative_dim" not in config_kwargs:
            config_kwargs["collaborative_dim"] = int(item_embeddings.shape[-1])
        item_ids = getattr(tokenizer, "item_ids", None)
        num_items = item_embeddings.shape[0] if item_embeddings is not None else len(item_ids or [])
        config = TokenRecConfig(
            backbone_config=backbone_config,
            vocab_size=len(tokenizer),
            num_items=int(num_items),
            num_user_codebooks=getattr(tokenizer, "num_user_codebooks", None),
            user_codebook_size=getattr(tokenizer, "user_codebook_size", None),
            num_item_codebooks=getattr(tokenizer, "num_item_codebooks", None),
            item_codebook_size=getattr(tokenizer, "item_codebook_size", None),
            backbone_pretrained=pretrained,
            backbone_name_or_path=name_or_path,
            **config_kwargs,
        )
        pad_token_id = getattr(tokenizer, "pad_token_id", None)
        if pad_token_id is not None:
            config.backbone_config.pad_token_id = pad_token_id
        item_codes = getattr(tokenizer, "item_codes", None)
        if item_codes is not None and len(item_codes):
            config.item_codes_sha256 = item_codes_sha256(item_codes)
            config.item_codes_rows = len(item_codes)

        model = cls(config)
        if backbone_weights is not None:
            # The pretrained T5 replaces the random one, then grows to the tokenizer's vocabulary.
            backbone_weights.config = config.backbone_config
            model.backbone = backbone_weights
            model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        if item_embeddings is not None:
            model.set_item_embeddings(item_embeddings)
        model.check_tokenizer(tokenizer)
        model.train()
        return model

    @torch.no_grad()
    def init_id_embeddings_from_codebooks(self, tokenizer: Any, generator: torch.Generator | None = None) -> None:
        """
        Set the input embeddings of the ID tokens from the codewords of the tokenizer's MQ-Tokenizers.

        Each side (users, items) draws one random projection with orthonormal columns from the codeword width to
        `d_model`, so the projected rows keep the inner products of the centered codewords up to one scale. The rows
        are scaled to the root mean square of the other token rows and shifted to their mean. A prompt's ID tokens
        then start with the collaborative geometry the MQ-Tokenizers learned, instead of random rows. Training
        updates them like any other row.

        Args:
            tokenizer: The [`TokenRecTokenizer`] this model was built for, with both MQ-Tokenizers attached.
            generator: Random generator of the projections, for reproducible runs.

        Raises:
            ValueError: The tokenizer has no MQ-Tokenizer for a side, or a codebook shape differs from its ID tokens.
        """
        self.check_tokenizer(tokenizer)
        weight = self.get_input_embeddings().weight
        sides = {
            "user": (tokenizer.user_quantizer, tokenizer.user_token_ids),
            "item": (tokenizer.item_quantizer, tokenizer.item_token_ids),
        }
        id_rows = torch.cat([token_ids.flatten() for _, token_ids in sides.values()])
        text_rows = torch.ones(weight.shape[0], dtype=torch.bool)
        text_rows[id_rows] = False
        reference = weight[text_rows.to(weight.device)].float()
        mean = reference.mean(dim=0)
        rms = (reference - mean).pow(2).sum(dim=1).mean().sqrt()

        for side, (quantizer, token_ids) in sides.items():
            if quantizer is None:
                raise ValueError(
                    f"The tokenizer has no {side} MQ-Tokenizer, so the {side} ID tokens have no codewords to start "
                    "from. Load a tokenizer saved with its MQ-Tokenizers, or keep the default random rows."
                )
            codebooks = quantizer.codebooks.detach().float().cpu()  # [K, L, codebook_dim]
            if tuple(codebooks.shape[:2]) != tuple(token_ids.shape):
                raise ValueError(
                    f"The {side} MQ-Tokenizer has codebooks of shape {tuple(codebooks.shape[:2])} but the tokenizer "
                    f"has {tuple(token_ids.shape)} {side} ID tokens; the MQ-Tokenizer does not belong to it."
                )
            codewords = codebooks.reshape(-1, codebooks.shape[-1])
            codewords = codewords - codewords.mean(dim=0)
            width, dim = weight.shape[1], codewords.shape[1]
            if width >= dim:
                basis, _ = torch.linalg.qr(torch.randn(width, dim, generator=generator))  # orthonormal columns
                rows = codewords @ basis.T
            else:
                # A narrower backbone keeps a random orthogonal projection of the codewords.
                basis, _ = torch.linalg.qr(torch.randn(dim, width, generator=generator))
                rows = codewords @ basis
            scale = rms / rows.pow(2).sum(dim=1).mean().sqrt().clamp_min(1e-12)
            weight[token_ids.flatten().to(weight.device)] = (mean + scale * rows).to(weight.dtype).to(weight.device)

    def check_tokenizer(self, tokenizer: Any) -> None:
        """
        Check that `tokenizer` is the vocabulary this model was built with.

        Raises:
            ValueError: The tokenizer's length, user or item codebook count (K) or size (L), or number of items
                differs from the model's config.
        """
        if len(tokenizer) != self.config.vocab_size:
            raise ValueError(
                f"The tokenizer has {len(tokenizer)} tokens but the model's embedding has {self.config.vocab_size} "
                "rows (config.vocab_size). Load the tokenizer saved with this model, or build the model for this "
                "tokenizer with `TokenRecForRetrieval.from_backbone(..., tokenizer)`."
            )
        for name in ("num_user_codebooks", "user_codebook_size", "num_item_codebooks", "item_codebook_size"):
            expected = getattr(self.config, name)
            found = getattr(tokenizer, name, None)
            if expected is not None and found is not None and int(found) != expected:
                raise ValueError(
                    f"The tokenizer has {name}={found} but the model was trained with {name}={expected}. "
                    "Use the tokenizer saved with this model."
                )
        item_ids = getattr(tokenizer, "item_ids", None)
        if item_ids is not None and self.config.num_items and len(item_ids) != self.config.num_items:
            raise ValueError(
                f"The tokenizer has {len(item_ids)} items but the model's item table has {self.config.num_items} "
                "rows. Add new items to both with `tokenizer.add_items(...)` and `model.add_item_embeddings(...)`."
            )
        digest, rows = getattr(self.config, "item_codes_sha256", None), getattr(self.config, "item_codes_rows", 0)
        item_codes = getattr(tokenizer, "item_codes", None)
        if (
            digest
            and item_codes is not None
            and len(item_codes) >= rows
            and item_codes_sha256(item_codes[:rows]) != digest
        ):
            raise ValueError(
                f"The tokenizer's item codes differ from those this model was trained with (the code table of its "
                f"first {rows} items has another SHA-256), so its ID tokens would name other items. A tokenizer "
                "from another run does this. Load the tokenizer saved next to this model."
            )

    @classmethod
    def from_pretrained(
        cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any
    ) -> TokenRecForRetrieval:
        """
        Load a saved TokenRec model from a local folder or a Hub id (see `PreTrainedModel.from_pretrained`).

        Raises:
            HubUnreachableError: A Hub id could not be downloaded. The message explains how to use a local folder.
            FileNotFoundError: The folder lacks `config.json` or `model.safetensors`.
        """
        name = os.fspath(pretrained_model_name_or_path)
        try:
            folder = resolve_pretrained_folder(
                name,
                required_files=("config.json", MODEL_WEIGHTS_NAME),
                artifact="TokenRec model",
                revision=kwargs.get("revision"),
                cache_dir=kwargs.get("cache_dir"),
                token=kwargs.get("token"),
                local_files_only=kwargs.get("local_files_only", False),
            )
        except HubUnreachableError as error:
            raise HubUnreachableError(f"{error} {RANDOM_WEIGHTS_HINT}") from error
        for key in ("revision", "cache_dir", "token"):
            kwargs.pop(key, None)
        kwargs.setdefault("use_safetensors", True)

        model = super().from_pretrained(folder, *model_args, **kwargs)
        model.model_card_data = load_model_card_data(folder)
        return model

    # ------------------------------------------------------------------ saving and sharing

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        tokenizer: Any | None = None,
        push_to_hub: bool = False,
        repo_id: str | None = None,
        model_card: bool = True,
        **kwargs: Any,
    ) -> None:
        """
        Save the config, the weights with the item table (`model.safetensors`) and a model card (`README.md`).

        The files are written in a staging folder and moved into `save_directory` only when all of them are
        complete, so an interrupted save leaves the previous files in place. Other files in the folder, such as a
        tokenizer saved there before, are kept.

        Args:
            save_directory: Target folder.
            tokenizer: A [`TokenRecTokenizer`] to save into the same folder (checked against the model first).
            push_to_hub: Whether to upload the folder to the Hub afterwards, to `repo_id`.
            repo_id: Hub repository for `push_to_hub`; defaults to the folder's name.
            model_card: Whether to write `README.md` from `self.model_card_data`.
            **kwargs: Passed to `PreTrainedModel.save_pretrained` (for example `max_shard_size`).
        """
        kwargs.pop("safe_serialization", None)
        if not kwargs.get("is_main_process", True):
            return
        if tokenizer is not None:
            self.check_tokenizer(tokenizer)

        with atomic_directory(save_directory) as staging:
            super().save_pretrained(staging, **kwargs)
            if model_card:
                write_model_card(self, Path(staging) / "README.md")
        if tokenizer is not None:
            tokenizer.save_pretrained(save_directory)

        if push_to_hub:
            self.push_to_hub(repo_id or Path(save_directory).absolute().name, tokenizer=tokenizer)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        tokenizer: Any | None = None,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        max_shard_size: int | str | None = "50GB",
        **kwargs: Any,
    ) -> Any:
        """
        Upload the model (with its generated model card, and the tokenizer when given) to a Hub repository.

        Unlike `PreTrainedModel.push_to_hub`, the README is this package's model card, not a generic one.

        Args:
            repo_id: The Hub repository, for example `"user/tokenrec-lastfm"`. Created when it does not exist.
            tokenizer: A [`TokenRecTokenizer`] to upload beside the model.
            commit_message, commit_description, private, token, revision, create_pr: As in `huggingface_hub`.
            max_shard_size: Largest weight file before sharding.

        Returns:
            The `huggingface_hub.CommitInfo` of the upload.
        """
        import tempfile

        from huggingface_hub import HfApi

        if kwargs:
            logger.warning(f"push_to_hub ignores the unsupported arguments {sorted(kwargs)}.")
        api = HfApi()
        repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as staging:
            self.save_pretrained(staging, tokenizer=tokenizer, max_shard_size=max_shard_size)
            return self._upload_modified_files(
                staging,
                repo_id,
                files_timestamps={},
                commit_message=commit_message or "Upload TokenRec model",
                token=token,
                create_pr=create_pr,
                revision=revision,
                commit_description=commit_description,
            )


def item_codes_sha256(codes: torch.Tensor) -> str:
    """Return the SHA-256 of an item code table `[num_items, K]`, independent of its integer dtype and device."""
    return hashlib.sha256(codes.detach().to("cpu", torch.int64).contiguous().numpy().tobytes()).hexdigest()


def _count_users(
    users: Sequence[Any] | None, histories: Sequence[Any] | None, user_embeddings: torch.Tensor | None
) -> int:
    counts = {}
    if users is not None:
        counts["users"] = len(users)
    if histories is not None:
        counts["histories"] = len(histories)
    if user_embeddings is not None:
        counts["user_embeddings"] = int(user_embeddings.shape[0])
    if not counts:
        raise ValueError("recommend() needs users, histories or user_embeddings; none was given.")
    if len(set(counts.values())) > 1:
        raise ValueError(f"recommend() got inputs of different lengths {counts}; pass one entry per user in each.")
    count = next(iter(counts.values()))
    if count == 0:
        raise ValueError("recommend() got zero users; pass at least one.")
    return count


def _user_label(users: Sequence[Any] | None, row: int) -> str:
    return repr(users[row]) if users is not None else f"given by histories[{row}]"


def _inference_template(tokenizer: Any, template: int | str | None, has_history: bool) -> str:
    """Return the template text for inference: the given one, or the first training template that fits."""
    if template is not None:
        if isinstance(template, int) and not isinstance(template, bool):
            if not 0 <= template < len(tokenizer.templates):
                raise ValueError(
                    f"template={template} is out of range; the tokenizer has {len(tokenizer.templates)} templates."
                )
            return tokenizer.templates[template]
        return validate_template(template)
    fitting = tokenizer.history_template_ids if has_history else tokenizer.user_only_template_ids
    candidates = [index for index in tokenizer.seen_template_ids if index in fitting] or fitting
    if not candidates:
        raise ValueError("The tokenizer has no template that fits this user; pass template= explicitly.")
    return tokenizer.templates[candidates[0]]


def _resolve_backbone_folder(
    name_or_path: str,
    revision: str | None,
    cache_dir: str | os.PathLike | None,
    token: str | bool | None,
    local_files_only: bool,
) -> Path:
    try:
        folder = resolve_pretrained_folder(
            name_or_path,
            required_files=("config.json",),
            artifact="T5 backbone",
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
    except HubUnreachableError as error:
        raise HubUnreachableError(f"{error} {RANDOM_WEIGHTS_HINT}") from error
    if not (folder / MODEL_WEIGHTS_NAME).is_file():
        present = sorted(path.name for path in folder.iterdir())
        raise FileNotFoundError(
            f"The T5 backbone folder {folder} has no {MODEL_WEIGHTS_NAME} (it contains {present}), so there are no "
            f"pretrained weights to load. {RANDOM_WEIGHTS_HINT}"
        )
    return folder


def register_auto_classes() -> None:
    """Register [`TokenRecConfig`] with `AutoConfig` and [`TokenRecForRetrieval`] with `AutoModel`.

    Safe to call more than once.
    """
    try:
        AutoConfig.register(TokenRecConfig.model_type, TokenRecConfig)
    except ValueError as error:
        if "already used" not in str(error):
            raise
    try:
        AutoModel.register(TokenRecConfig, TokenRecForRetrieval)
    except ValueError as error:
        if "already" not in str(error):
            raise


def apply_lora(
    model: TokenRecForRetrieval,
    r: int = 8,
    alpha: int = 16,
    target_modules: Sequence[str] = ("q", "v"),
    dropout: float = 0.05,
    id_token_indices: Sequence[int] | None = None,
    train_projection: bool = True,
) -> Any:
    """
    Wrap `model` in a PEFT LoRA model: low-rank adapters on the backbone, while the ID-token embedding rows and the
    projection head train in full.

    The rows of the new ID tokens are trained with PEFT's trainable tokens (`trainable_token_indices` on the
    encoder's token embedding), so the saved adapter stores only those rows, not the whole embedding matrix. The
    projection head is listed in `modules_to_save`. The item table is a buffer of the base model and is not part of
    the adapter. To reload, load the base model saved before training with `from_pretrained`, then call
    `peft.PeftModel.from_pretrained(base_model, adapter_folder)`.

    Args:
        model: The model to adapt. It is modified in place and returned wrapped.
        r: LoRA rank.
        alpha: LoRA scaling numerator (`lora_alpha`); the update is scaled by `alpha / r`.
        target_modules: Names of the backbone's linear layers to adapt; T5 names its attention projections
            `q`, `k`, `v`, `o` and its feed-forward layers `wi`, `wo`.
        dropout: Dropout on the LoRA input.
        id_token_indices: Token ids whose embedding rows are trained. Defaults to the last
            `K_user * L_user + K_item * L_item` ids of the vocabulary, where `TokenRecTokenizer` puts the ID tokens.
        train_projection: Whether the projection head trains (it starts from random weights, so it normally must).

    Returns:
        A `peft.PeftModel` whose `forward` takes the same arguments as [`TokenRecForRetrieval.forward`].

    Raises:
        ValueError: The ID-token rows cannot be inferred from the config, or an index is outside the vocabulary.
    """
    from peft import LoraConfig, get_peft_model

    config = model.config
    if id_token_indices is None:
        sizes = (
            config.num_user_codebooks,
            config.user_codebook_size,
            config.num_item_codebooks,
            config.item_codebook_size,
        )
        if any(size is None for size in sizes):
            raise ValueError(
                "apply_lora cannot infer the ID-token rows: the config has no user/item codebook counts and sizes. "
                "Build the model with `from_backbone(..., tokenizer)` or pass id_token_indices."
            )
        num_id_tokens = sizes[0] * sizes[1] + sizes[2] * sizes[3]
        id_token_indices = range(config.vocab_size - num_id_tokens, config.vocab_size)
    id_token_indices = [int(index) for index in id_token_indices]
    bad = [index for index in id_token_indices if not 0 <= index < config.vocab_size]
    if bad:
        raise ValueError(f"id_token_indices contains {bad[:5]}, outside the vocabulary [0, {config.vocab_size}).")

    lora_config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=list(target_modules),
        modules_to_save=["projection"] if train_projection else None,
        # Only the encoder reads prompt tokens; the decoder's one input token is the start token.
        trainable_token_indices={"encoder.embed_tokens": id_token_indices} if id_token_indices else None,
    )
    return get_peft_model(model, lora_config)


__all__ = [
    "TokenRecForRetrieval",
    "TokenRecPreTrainedModel",
    "TokenRecProjection",
    "TokenRecRecommendations",
    "TokenRecRetrievalOutput",
    "apply_lora",
    "register_auto_classes",
]
