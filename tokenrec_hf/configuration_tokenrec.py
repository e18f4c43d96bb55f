"""Configuration of the TokenRec generative retrieval model (T5 backbone, projection head, item table)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedConfig, T5Config
from transformers.utils import logging

from .utils import check_artifact_version, package_version_stamp

logger = logging.get_logger(__name__)

QUERY_POOLING_OPTIONS = ("decoder", "encoder_mean")
PROJECTION_ACTIVATIONS = ("relu", "gelu", "tanh")


class TokenRecConfig(PreTrainedConfig):
    r"""
    Configuration of [`TokenRecForRetrieval`] (the TokenRec paper by Qu et al., Eq. 17 to 19). A T5 backbone reads a
    prompt with user and item ID tokens. A three-layer MLP projects its pooled hidden state to the collaborative
    space, and cosine similarity against the item table ranks the whole catalog.

    Args:
        backbone_config (`T5Config` or `dict`, *optional*):
            Configuration of the T5 backbone. A dict is read with `T5Config(**dict)`. Defaults to the t5-small shape.
            Its `vocab_size` is set to `vocab_size` when that is given.
        collaborative_dim (`int`, *optional*, defaults to 64):
            Size of the collaborative item representations `q_j` (the item table's width) and of the query `z_i`.
        projection_hidden_sizes (`Sequence[int]`, *optional*, defaults to `(512, 256)`):
            Widths of the two hidden layers of the projection MLP `d_model -> h1 -> h2 -> collaborative_dim`.
        projection_activation (`str`, *optional*, defaults to `"relu"`):
            Activation between the projection layers, one of `"relu"`, `"gelu"`, `"tanh"`.
        projection_dropout (`float`, *optional*, defaults to 0.0):
            Dropout probability after each hidden projection layer.
        margin (`float`, *optional*, defaults to 0.1):
            The margin `gamma` of the cosine margin loss: a negative pair costs `max(0, cos - gamma)`. In [-1, 1].
        num_negatives (`int`, *optional*, defaults to 1):
            Negative items per positive item in training (the paper's 1:1 ratio by default).
        query_pooling (`str`, *optional*, defaults to `"encoder_mean"`):
            How the backbone's output becomes one vector `h_i` per prompt. `"encoder_mean"`: the mean of the encoder's
            last hidden states over non-padding tokens (the backbone is then a `T5EncoderModel`). `"decoder"`: the
            decoder's last hidden state for a one-token decoder input (`decoder_start_token_id`). `"encoder_mean"`
            reached a higher validation NDCG@20 on LastFM (see docs/results.md).
        num_items (`int`, *optional*, defaults to 0):
            Rows of the item table, that is the size of the catalog the model retrieves from.
        num_user_codebooks (`int`, *optional*):
            `K` of the user MQ-Tokenizer the vocabulary was built with. Checked against the tokenizer.
        user_codebook_size (`int`, *optional*):
            `L` of the user MQ-Tokenizer.
        num_item_codebooks (`int`, *optional*):
            `K` of the item MQ-Tokenizer.
        item_codebook_size (`int`, *optional*):
            `L` of the item MQ-Tokenizer.
        vocab_size (`int`, *optional*):
            Size of the `TokenRecTokenizer` vocabulary (text tokens plus ID tokens). The backbone's token embedding
            has exactly this many rows.
        backbone_pretrained (`bool`, *optional*, defaults to `False`):
            Whether the backbone started from pretrained weights (`True`) or from random initialization (`False`).
        backbone_name_or_path (`str`, *optional*):
            The Hub id or local folder the backbone (or its config) came from, for the record.
        item_codes_sha256 (`str`, *optional*):
            SHA-256 of the item code table of the tokenizer the model was built for, over its first
            `item_codes_rows` items. Set by [`TokenRecForRetrieval.from_backbone`]; a tokenizer from another run,
            with the same K, L and catalog size but other codes, then fails the tokenizer check.
        item_codes_rows (`int`, *optional*, defaults to 0):
            Number of items `item_codes_sha256` covers. Items added later are not part of it.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Not used by the projection head, which uses Xavier-uniform weights; kept for `PreTrainedModel` helpers.
        tokenrec_hf_version (`str`, *optional*):
            The tokenrec_hf version that wrote the config. Set automatically; a newer one logs a warning on load.

    Raises:
        ValueError: A value is out of its accepted range; the message names the value and the accepted ones.

    Example:

    ```python
    >>> from transformers import T5Config
    >>> from tokenrec_hf.configuration_tokenrec import TokenRecConfig

    >>> backbone = T5Config(vocab_size=400, d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8)
    >>> config = TokenRecConfig(backbone_config=backbone, projection_hidden_sizes=(64, 64), num_items=100)
    >>> config.query_pooling
    'decoder'
    ```
    """

    model_type = "tokenrec"
    sub_configs_defaults = {"backbone_config": T5Config}

    def __init__(
        self,
        backbone_config: T5Config | dict[str, Any] | None = None,
        collaborative_dim: int = 64,
        projection_hidden_sizes: Sequence[int] = (512, 256),
        projection_activation: str = "relu",
        projection_dropout: float = 0.0,
        margin: float = 0.1,
        num_negatives: int = 1,
        query_pooling: str = "encoder_mean",
        num_items: int = 0,
        num_user_codebooks: int | None = None,
        user_codebook_size: int | None = None,
        num_item_codebooks: int | None = None,
        item_codebook_size: int | None = None,
        vocab_size: int | None = None,
        backbone_pretrained: bool = False,
        backbone_name_or_path: str | None = None,
        item_codes_sha256: str | None = None,
        item_codes_rows: int = 0,
        initializer_range: float = 0.02,
        tokenrec_hf_version: str | None = None,
        **kwargs: Any,
    ) -> None:
        backbone_config = _build_backbone_config(backbone_config)
        if vocab_size is not None:
            _check_positive_int("vocab_size", vocab_size)
            backbone_config.vocab_size = vocab_size
        self.backbone_config = backbone_config

        self.collaborative_dim = collaborative_dim
        self.projection_hidden_sizes = [int(size) for size in _as_sequence(projection_hidden_sizes)]
        self.projection_activation = projection_activation
        self.projection_dropout = float(projection_dropout)
        self.margin = float(margin)
        self.num_negatives = num_negatives
        self.query_pooling = query_pooling
        self.num_items = num_items
        self.num_user_codebooks = num_user_codebooks
        self.user_codebook_size = user_codebook_size
        self.num_item_codebooks = num_item_codebooks
        self.item_codebook_size = item_codebook_size
        self.vocab_size = vocab_size if vocab_size is not None else backbone_config.vocab_size
        self.backbone_pretrained = bool(backbone_pretrained)
        self.backbone_name_or_path = backbone_name_or_path
        self.item_codes_sha256 = item_codes_sha256
        self.item_codes_rows = item_codes_rows
        self.initializer_range = initializer_range

        # A config read from disk keeps the version that wrote it; a new one records the installed version.
        if tokenrec_hf_version is not None:
            check_artifact_version(tokenrec_hf_version, "TokenRec model config")
        self.tokenrec_hf_version = tokenrec_hf_version or package_version_stamp()["tokenrec_hf_version"]

        self._validate()
        super().__init__(**kwargs)

    def _validate(self) -> None:
        _check_positive_int("collaborative_dim", self.collaborative_dim)
        if len(self.projection_hidden_sizes) != 2 or any(size <= 0 for size in self.projection_hidden_sizes):
            raise ValueError(
                f"projection_hidden_sizes={self.projection_hidden_sizes} is invalid: the projection MLP has three "
                "layers (d_model -> h1 -> h2 -> collaborative_dim), so pass two positive widths such as (512, 256)."
            )
        if self.projection_activation not in PROJECTION_ACTIVATIONS:
            raise ValueError(
                f"projection_activation={self.projection_activation!r} is not supported; "
                f"use one of {list(PROJECTION_ACTIVATIONS)}."
            )
        if not 0.0 <= self.projection_dropout < 1.0:
            raise ValueError(f"projection_dropout={self.projection_dropout} is invalid; it must be in [0, 1).")
        if not -1.0 <= self.margin <= 1.0:
            raise ValueError(
                f"margin={self.margin} is invalid: it is compared with a cosine similarity, so it must be in "
                "[-1, 1]. The TokenRec paper's range is 0 to 0.2."
            )
        _check_positive_int("num_negatives", self.num_negatives)
        if self.query_pooling not in QUERY_POOLING_OPTIONS:
            raise ValueError(
                f"query_pooling={self.query_pooling!r} is not supported; use one of {list(QUERY_POOLING_OPTIONS)}."
            )
        if not isinstance(self.num_items, int) or isinstance(self.num_items, bool) or self.num_items < 0:
            raise ValueError(f"num_items={self.num_items!r} is invalid; it must be a non-negative integer.")
        for name in ("num_user_codebooks", "user_codebook_size", "num_item_codebooks", "item_codebook_size"):
            value = getattr(self, name)
            if value is not None:
                _check_positive_int(name, value)

    @property
    def decoder_start_token_id(self) -> int:
        """The one decoder input token of `"decoder"` pooling: the backbone's decoder start token (T5: the pad id)."""
        start = getattr(self.backbone_config, "decoder_start_token_id", None)
        if start is None:
            start = self.backbone_config.pad_token_id
        return int(start) if start is not None else 0


def _build_backbone_config(backbone_config: T5Config | dict[str, Any] | None) -> T5Config:
    if backbone_config is None:
        return T5Config()
    if isinstance(backbone_config, T5Config):
        # A copy, so that setting the vocabulary size or building the model never changes the caller's config.
        return T5Config.from_dict(backbone_config.to_dict())
    if isinstance(backbone_config, PreTrainedConfig):
        raise ValueError(
            f"backbone_config has model_type {backbone_config.model_type!r}; TokenRec supports T5 backbones only. "
            "Pass a T5Config, for example `T5Config.from_pretrained('t5-small')`."
        )
    if isinstance(backbone_config, dict):
        model_type = backbone_config.get("model_type", "t5")
        if model_type != "t5":
            raise ValueError(
                f"backbone_config has model_type {model_type!r}; TokenRec supports T5 backbones only "
                "(model_type 't5')."
            )
        fields = {key: value for key, value in backbone_config.items() if key != "model_type"}
        return T5Config(**fields)
    raise ValueError(
        f"backbone_config must be a T5Config, a dict or None, got {type(backbone_config).__name__}: {backbone_config!r}."
    )


def _as_sequence(value: Sequence[int] | int) -> Sequence[int]:
    if isinstance(value, int):
        return [value]
    return list(value)


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{name}={value!r} is invalid; it must be a positive integer.")


__all__ = ["QUERY_POOLING_OPTIONS", "TokenRecConfig"]
