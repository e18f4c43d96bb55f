"""Configuration of the masked vector-quantized tokenizer (MQ-Tokenizer) that turns user or item embeddings into K codes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedConfig
from transformers.activations import ACT2FN
from transformers.utils import logging

from ..utils.versioning import check_artifact_version, package_version_stamp

logger = logging.get_logger(__name__)

QUANTIZER_TYPES = ("kway", "residual")


def _check_hidden_sizes(name: str, sizes: Sequence[int]) -> list[int]:
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise ValueError(f"{name} must be a list of positive layer widths such as [512, 256, 128], got {sizes!r}.")
    sizes = list(sizes)
    if not sizes or any(not isinstance(size, int) or isinstance(size, bool) or size < 1 for size in sizes):
        raise ValueError(
            f"{name} must be a non-empty list of positive integers (the hidden layer widths), got {sizes!r}."
        )
    return sizes


class MQTokenizerConfig(PreTrainedConfig):
    r"""
    Configuration of an [`MQTokenizer`], the masked vector-quantized tokenizer of the TokenRec paper (Qu et al.).

    The tokenizer masks the input embedding element-wise, encodes it with K separate MLP encoders, snaps each encoder
    output to its nearest codeword in the matching codebook of L codewords, and reconstructs the input from the
    average of the K chosen codewords with an MLP decoder. The K codeword indices are the entity's ID tokens.

    Args:
        input_dim (`int`, *optional*, defaults to 64):
            Width of the collaborative embeddings to tokenize.
        num_codebooks (`int`, *optional*, defaults to 3):
            K, the number of codebooks and therefore of ID tokens per entity. Accepted range: 1 to 64.
        codebook_size (`int`, *optional*, defaults to 256):
            L, the number of codewords in each codebook. Accepted range: 2 to 65536.
        codebook_dim (`int`, *optional*, defaults to 64):
            d_c, the width of the encoder outputs and the codewords.
        encoder_hidden_sizes (`list[int]`, *optional*, defaults to `[512, 256, 128]`):
            Hidden layer widths of each of the K encoder MLPs (the paper uses three hidden layers).
        decoder_hidden_sizes (`list[int]`, *optional*, defaults to `[128, 256, 512]`):
            Hidden layer widths of the decoder MLP.
        hidden_act (`str`, *optional*, defaults to `"relu"`):
            Activation between MLP layers, any key of `transformers.activations.ACT2FN`.
        mask_ratio (`float`, *optional*, defaults to 0.2):
            rho, the probability that an input element is zeroed during training. Accepted range: [0, 1). Set 0 to
            turn masking off.
        beta (`float`, *optional*, defaults to 0.25):
            Weight of the commitment loss. Must be non-negative.
        quantizer (`str`, *optional*, defaults to `"kway"`):
            `"kway"` for the MQ-Tokenizer's K parallel encoders and codebooks, or `"residual"` for an RQ-VAE style
            baseline: one encoder whose output is quantized by K codebooks in turn, each one quantizing the residual
            left by the previous ones.
        standardize_inputs (`bool`, *optional*, defaults to `True`):
            Standardize every input dimension with the mean and standard deviation of the training embeddings before
            encoding, and undo it after decoding. The statistics are stored with the weights.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Half-width of the uniform distribution that initializes codewords before k-means initialization.

    Raises:
        ValueError: When a value lies outside its accepted range; the message names the value and the range.

    Example:

    ```python
    >>> from tokenrec_hf.quantization import MQTokenizer, MQTokenizerConfig

    >>> config = MQTokenizerConfig(input_dim=64, num_codebooks=3, codebook_size=256)
    >>> model = MQTokenizer(config)
    ```
    """

    model_type = "mq_tokenizer"

    def __init__(
        self,
        input_dim: int = 64,
        num_codebooks: int = 3,
        codebook_size: int = 256,
        codebook_dim: int = 64,
        encoder_hidden_sizes: Sequence[int] = (512, 256, 128),
        decoder_hidden_sizes: Sequence[int] = (128, 256, 512),
        hidden_act: str = "relu",
        mask_ratio: float = 0.2,
        beta: float = 0.25,
        quantizer: str = "kway",
        standardize_inputs: bool = True,
        initializer_range: float = 0.02,
        **kwargs: Any,
    ) -> None:
        saved_version = kwargs.pop("tokenrec_hf_version", None)
        check_artifact_version(saved_version, "MQ-Tokenizer config")

        self.input_dim = input_dim
        self.num_codebooks = num_codebooks
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.encoder_hidden_sizes = _check_hidden_sizes("encoder_hidden_sizes", encoder_hidden_sizes)
        self.decoder_hidden_sizes = _check_hidden_sizes("decoder_hidden_sizes", decoder_hidden_sizes)
        self.hidden_act = hidden_act
        self.mask_ratio = mask_ratio
        self.beta = beta
        self.quantizer = quantizer
        self.standardize_inputs = standardize_inputs
        self.initializer_range = initializer_range
        self.tokenrec_hf_version = package_version_stamp()["tokenrec_hf_version"]
        self._validate()

        super().__init__(**kwargs)

    def _validate(self) -> None:
        for name in ("input_dim", "codebook_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        if not isinstance(self.num_codebooks, int) or not 1 <= self.num_codebooks <= 64:
            raise ValueError(
                f"num_codebooks (K) must be an integer in [1, 64], got {self.num_codebooks!r}. "
                "The TokenRec paper uses K=3."
            )
        if not isinstance(self.codebook_size, int) or not 2 <= self.codebook_size <= 65536:
            raise ValueError(
                f"codebook_size (L) must be an integer in [2, 65536], got {self.codebook_size!r}. "
                "The TokenRec paper uses L=256 or 512."
            )
        if not isinstance(self.mask_ratio, (int, float)) or not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(
                f"mask_ratio (rho) must be a float in [0, 1), got {self.mask_ratio!r}. Use 0 to turn masking off."
            )
        if not isinstance(self.beta, (int, float)) or self.beta < 0:
            raise ValueError(f"beta (commitment loss weight) must be a non-negative float, got {self.beta!r}.")
        if self.quantizer not in QUANTIZER_TYPES:
            raise ValueError(f"quantizer must be one of {list(QUANTIZER_TYPES)}, got {self.quantizer!r}.")
        if self.hidden_act not in ACT2FN:
            raise ValueError(
                f"hidden_act {self.hidden_act!r} is not a known activation; use one of {sorted(ACT2FN)[:12]}..."
            )
        if not isinstance(self.initializer_range, (int, float)) or self.initializer_range <= 0:
            raise ValueError(f"initializer_range must be a positive float, got {self.initializer_range!r}.")

    @classmethod
    def one_way(cls, config: MQTokenizerConfig | None = None, **kwargs: Any) -> MQTokenizerConfig:
        r"""
        Build the one-way ablation of a configuration: a single codebook of K * L codewords with one encoder.

        Args:
            config (`MQTokenizerConfig`, *optional*):
                The K-way configuration to derive the ablation from. When omitted, one is built from `kwargs`.
            **kwargs:
                Fields of the K-way configuration, used when `config` is `None`.

        Returns:
            `MQTokenizerConfig`: The same settings with `num_codebooks=1` and `codebook_size=K * L`.
        """
        if config is None:
            config = cls(**kwargs)
        elif kwargs:
            raise ValueError(f"Pass either a config or keyword arguments to one_way, not both (got {sorted(kwargs)}).")
        fields = config.to_dict()
        for name in ("model_type", "transformers_version", "architectures", "tokenrec_hf_version"):
            fields.pop(name, None)
        fields["codebook_size"] = config.num_codebooks * config.codebook_size
        fields["num_codebooks"] = 1
        fields["quantizer"] = "kway"
        return cls(**fields)


__all__ = ["MQTokenizerConfig"]
