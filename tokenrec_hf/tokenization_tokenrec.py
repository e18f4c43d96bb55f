"""TokenRec tokenizer: a T5 tokenizer extended with user and item ID tokens produced by the MQ-Tokenizers.

The TokenRec paper (Qu et al.) tokenizes every user and item into K discrete ID tokens, one codeword from each of K
codebooks learned by a masked vector-quantized tokenizer (MQ-Tokenizer). The language model therefore needs only K x L
new tokens per side (L codewords per codebook) for any number of users or items. This module adds those tokens to a
T5 tokenizer and stores the code tables that map each user and item to its K codewords. It fills prompt templates with
the resulting token strings and tokenizes new users and items through the frozen MQ-Tokenizers.

ID tokens are named `<u{k}-{l}>` for users and `<v{k}-{l}>` for items, where `k` is the 1-based codebook and `l` the
0-based codeword, so user `<u1-5><u2-0><u3-17>` uses codeword 5 of codebook 1, codeword 0 of codebook 2, and so on.
"""

from __future__ import annotations

import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tokenizers import AddedToken
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.models.auto.tokenization_auto import tokenizer_class_from_name
from transformers.utils import PushToHubMixin, logging
from transformers.utils.hub import hf_api

from .prompts import (
    DEFAULT_TEMPLATES,
    DEFAULT_UNSEEN_TEMPLATE_ID,
    format_prompt,
    make_rng,
    select_history,
    template_uses_history,
    validate_template,
)
from .utils import (
    atomic_directory,
    atomic_write_json,
    check_artifact_version,
    load_json,
    package_version_stamp,
    resolve_pretrained_folder,
    save_safetensors_atomic,
)

logger = logging.get_logger(__name__)

TOKENIZER_CONFIG_NAME = "tokenrec_tokenizer_config.json"
USER_CODES_NAME = "user_codes.safetensors"
ITEM_CODES_NAME = "item_codes.safetensors"
USER_IDS_NAME = "user_ids.json"
ITEM_IDS_NAME = "item_ids.json"
USER_QUANTIZER_FOLDER = "user_quantizer"
ITEM_QUANTIZER_FOLDER = "item_quantizer"

DEFAULT_USER_TOKEN_FORMAT = "<u{codebook}-{codeword}>"
DEFAULT_ITEM_TOKEN_FORMAT = "<v{codebook}-{codeword}>"

# The same ranges as MQTokenizerConfig. The vocabulary grows by 2 * K * L tokens, so the bounds also keep a typo
# from adding millions of embedding rows.
MAX_NUM_CODEBOOKS = 64
MAX_CODEBOOK_SIZE = 65536

# Keyword arguments of `save_pretrained` that configure the upload, and those `AutoTokenizer` adds when loading.
_HUB_KWARGS = ("repo_id", "commit_message", "commit_description", "token", "private", "create_pr", "revision")
_AUTO_KWARGS = ("_from_auto", "_commit_hash", "trust_remote_code", "use_fast")

__all__ = ["TokenRecTokenizer"]


def _check_codebook_shape(side: str, num_codebooks: Any, codebook_size: Any) -> tuple[int, int]:
    for name, value, minimum, maximum in (
        (f"num_{side}_codebooks", num_codebooks, 1, MAX_NUM_CODEBOOKS),
        (f"{side}_codebook_size", codebook_size, 2, MAX_CODEBOOK_SIZE),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            raise ValueError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}.")
    return num_codebooks, codebook_size


def _check_token_format(side: str, token_format: str) -> str:
    try:
        first = token_format.format(codebook=1, codeword=0)
        second = token_format.format(codebook=1, codeword=1)
        third = token_format.format(codebook=2, codeword=0)
    except (AttributeError, KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"{side}_token_format must be a string with {{codebook}} and {{codeword}} fields, got {token_format!r} "
            f"({type(error).__name__}: {error})."
        ) from error
    if len({first, second, third}) != 3 or any(char.isspace() for char in first):
        raise ValueError(
            f"{side}_token_format {token_format!r} must use both {{codebook}} and {{codeword}} and contain no "
            f"whitespace, so that every ID token has its own name; the default is "
            f"{DEFAULT_USER_TOKEN_FORMAT if side == 'user' else DEFAULT_ITEM_TOKEN_FORMAT!r}."
        )
    return token_format


def _check_codes(codes: Any, num_codebooks: int, codebook_size: int, side: str, source: str) -> torch.LongTensor:
    """Validate a code table [N, K] against K and L, naming `source` (a file or the quantizer) in errors."""
    codes = torch.as_tensor(codes)
    if codes.is_floating_point() or codes.dtype == torch.bool or codes.is_complex():
        raise ValueError(f"The {side} code table from {source} must contain integers, got dtype {codes.dtype}.")
    if codes.ndim != 2 or codes.shape[1] != num_codebooks:
        raise ValueError(
            f"The {side} code table from {source} has shape {tuple(codes.shape)}, but the {side} tokens use "
            f"K={num_codebooks} codebooks, so it must have shape [num_{side}s, {num_codebooks}]. Rebuild the codes "
            f"with the matching {side} MQ-Tokenizer."
        )
    codes = codes.to(device="cpu", dtype=torch.long)
    if codes.numel():
        bad = ((codes < 0) | (codes >= codebook_size)).nonzero()
        if len(bad):
            row, column = (int(value) for value in bad[0])
            raise ValueError(
                f"The {side} code table from {source} has code {int(codes[row, column])} at row {row}, codebook "
                f"{column + 1}, outside [0, {codebook_size}) (L={codebook_size} codewords per codebook). The codes "
                f"come from an MQ-Tokenizer with a different codebook size; rebuild them with the matching one."
            )
    return codes.contiguous()


def _check_ids(ids: Sequence[Any] | None, count: int, side: str, source: str) -> list[str]:
    if ids is None:
        return [str(index) for index in range(count)]
    if isinstance(ids, str) or not isinstance(ids, Sequence):
        raise ValueError(f"{side}_ids from {source} must be a list of ids, got {type(ids).__name__}.")
    ids = [str(raw_id) for raw_id in ids]
    if len(ids) != count:
        raise ValueError(
            f"{side}_ids from {source} has {len(ids)} entries but there are {count} {side} code rows; pass one id per "
            "row, in the same order."
        )
    seen: set[str] = set()
    for raw_id in ids:
        if raw_id in seen:
            raise ValueError(f"{side}_ids from {source} contains {raw_id!r} more than once; ids must be unique.")
        seen.add(raw_id)
    return ids


def _is_index(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, torch.Tensor):
        return value.ndim == 0 and not value.is_floating_point()
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and value.dtype.kind in "iu"


@dataclass
class _EntityTable:
    """Codes, raw ids, ID-token names and vocabulary ids of one side (users or items)."""

    side: str
    num_codebooks: int
    codebook_size: int
    token_format: str
    codes: torch.LongTensor  # [N, K]
    ids: list[str]
    quantizer: Any | None = None
    token_names: list[list[str]] = field(default_factory=list)  # [K][L]
    token_ids: torch.LongTensor | None = None  # [K, L] vocabulary ids
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.token_names = [
            [self.token_format.format(codebook=k + 1, codeword=l) for l in range(self.codebook_size)]  # noqa: E741
            for k in range(self.num_codebooks)
        ]
        self.index = {raw_id: position for position, raw_id in enumerate(self.ids)}

    @property
    def plural(self) -> str:
        return f"{self.side}s"

    def resolve(self, entity: Any) -> int:
        """Return the row of `entity`: an integer is an index, anything else a raw id."""
        if _is_index(entity):
            position = int(entity)
            if not 0 <= position < len(self.ids):
                raise IndexError(
                    f"{self.side} index {position} is out of range: this tokenizer has {len(self.ids)} "
                    f"{self.plural} (indices 0 to {len(self.ids) - 1}). Pass a raw {self.side} id as a string to "
                    "look it up by id."
                )
            return position
        raw_id = str(entity)
        if raw_id not in self.index:
            raise KeyError(self.unknown_message(raw_id))
        return self.index[raw_id]

    def unknown_message(self, raw_id: str) -> str:
        if self.side == "user":
            how = (
                "compute its collaborative embedding, for example by folding it in from its history with "
                "`CollaborativeModel.fold_in_users([history])`, then tokenize it with "
                "`tokenizer.add_users(embeddings, user_ids)`"
            )
        else:
            how = (
                "compute its collaborative embedding, for example with `CollaborativeModel.fold_in_items(...)`, then "
                "tokenize it with `tokenizer.add_items(embeddings, item_ids)`"
            )
        return f"Unknown {self.side} id {raw_id!r}: this tokenizer has no code for it ({len(self.ids)} known). To add it, {how}."

    def token_string(self, row: int) -> str:
        return self.codes_to_string(self.codes[row])

    def codes_to_string(self, codes: torch.Tensor) -> str:
        return "".join(self.token_names[k][int(code)] for k, code in enumerate(codes.tolist()))


class TokenRecTokenizer(PushToHubMixin):
    r"""
    Tokenizer for TokenRec: a T5 tokenizer plus K x L user ID tokens and K x L item ID tokens.

    It composes the base tokenizer (loaded with `AutoTokenizer`) instead of subclassing it. The base tokenizer encodes
    the text, in which users and items appear as strings of their K ID tokens. Each ID token encodes to exactly one
    id. Encoding, padding and decoding delegate to the base tokenizer.

    The ID tokens are added as `AddedToken(name, normalized=False, special=False, lstrip=False, rstrip=False)`.
    `normalized=False` keeps the normalizer from altering the names, and `special=False` keeps them in
    `decode(..., skip_special_tokens=True)`. No flag stops the stray `▁` token that T5's Metaspace pre-tokenizer makes
    when punctuation directly follows an ID token (`"<v3-2>,"` encodes as `<v3-2> ▁ ,`), so the prompt templates put
    a word or the end of the text after every ID token instead (see `tokenrec_hf.prompts`).

    Args:
        base_tokenizer (`PreTrainedTokenizerBase` or `str`):
            The text tokenizer, or a local folder or Hub id to load it from with `AutoTokenizer`. A tokenizer object is
            extended in place.
        num_user_codebooks, user_codebook_size (`int`, *optional*):
            K and L of the user ID tokens. Default to the user MQ-Tokenizer's `num_codebooks` and `codebook_size`.
        num_item_codebooks, item_codebook_size (`int`, *optional*):
            K and L of the item ID tokens. Default to the item MQ-Tokenizer's.
        user_codes, item_codes (`torch.LongTensor` of shape `(num_users, K)` / `(num_items, K)`, *optional*):
            Code tables: row i holds the K codewords of user (item) i. Default to empty tables.
        user_ids, item_ids (`list[str]`, *optional*):
            Raw ids of the rows of the code tables. Default to `"0"`, `"1"`, ...
        user_quantizer, item_quantizer (`MQTokenizer`, *optional*):
            Frozen MQ-Tokenizers that tokenize new users and items from their collaborative embeddings.
        templates (`list[str]`, *optional*):
            Prompt templates, defaults to `tokenrec_hf.prompts.DEFAULT_TEMPLATES`.
        unseen_template_id (`int`, *optional*, defaults to 10):
            Index of the template held out of training. `None` makes every template a training template.
        user_token_format, item_token_format (`str`, *optional*):
            Name patterns of the ID tokens, with `{codebook}` (1-based) and `{codeword}` (0-based) fields.

    Raises:
        ValueError: When K or L is out of range, a code table does not match K and L or its quantizer, ids do not
            match the code rows, or a template is invalid.
    """

    vocab_files_names = {
        "tokenrec_config_file": TOKENIZER_CONFIG_NAME,
        "user_codes_file": USER_CODES_NAME,
        "item_codes_file": ITEM_CODES_NAME,
        "user_ids_file": USER_IDS_NAME,
        "item_ids_file": ITEM_IDS_NAME,
    }

    def __init__(
        self,
        base_tokenizer: PreTrainedTokenizerBase | str | os.PathLike,
        *,
        num_user_codebooks: int | None = None,
        user_codebook_size: int | None = None,
        num_item_codebooks: int | None = None,
        item_codebook_size: int | None = None,
        user_codes: torch.Tensor | None = None,
        item_codes: torch.Tensor | None = None,
        user_ids: Sequence[str] | None = None,
        item_ids: Sequence[str] | None = None,
        user_quantizer: Any | None = None,
        item_quantizer: Any | None = None,
        templates: Sequence[str] | None = None,
        unseen_template_id: int | None = DEFAULT_UNSEEN_TEMPLATE_ID,
        user_token_format: str = DEFAULT_USER_TOKEN_FORMAT,
        item_token_format: str = DEFAULT_ITEM_TOKEN_FORMAT,
    ) -> None:
        if not isinstance(base_tokenizer, PreTrainedTokenizerBase):
            base_tokenizer = self._load_base_tokenizer(base_tokenizer)
        self.base_tokenizer = base_tokenizer

        self._users = self._build_table(
            "user", num_user_codebooks, user_codebook_size, user_token_format, user_codes, user_ids, user_quantizer
        )
        self._items = self._build_table(
            "item", num_item_codebooks, item_codebook_size, item_token_format, item_codes, item_ids, item_quantizer
        )
        user_names = {name for row in self._users.token_names for name in row}
        item_names = {name for row in self._items.token_names for name in row}
        if user_names & item_names:
            raise ValueError(
                f"user_token_format {user_token_format!r} and item_token_format {item_token_format!r} produce the same "
                f"token names (for example {sorted(user_names & item_names)[0]!r}); give the two sides different names."
            )

        self._add_id_tokens()
        self._set_templates(templates, unseen_template_id)

    # Construction helpers.

    @staticmethod
    def _load_base_tokenizer(name_or_path: str | os.PathLike, **kwargs: Any) -> PreTrainedTokenizerBase:
        folder = resolve_pretrained_folder(
            name_or_path,
            artifact="base tokenizer",
            allow_patterns=["*.json", "*.model", "*.txt", "*.jinja"],
            **{
                name: kwargs.pop(name)
                for name in ("revision", "cache_dir", "token", "local_files_only")
                if name in kwargs
            },
        )
        return AutoTokenizer.from_pretrained(folder, **kwargs)

    @staticmethod
    def _build_table(
        side: str,
        num_codebooks: int | None,
        codebook_size: int | None,
        token_format: str,
        codes: torch.Tensor | None,
        ids: Sequence[str] | None,
        quantizer: Any | None,
    ) -> _EntityTable:
        if quantizer is not None:
            quantizer_k = int(quantizer.config.num_codebooks)
            quantizer_l = int(quantizer.config.codebook_size)
            num_codebooks = quantizer_k if num_codebooks is None else num_codebooks
            codebook_size = quantizer_l if codebook_size is None else codebook_size
            if (num_codebooks, codebook_size) != (quantizer_k, quantizer_l):
                raise ValueError(
                    f"The {side} MQ-Tokenizer has K={quantizer_k} codebooks of L={quantizer_l} codewords, but the "
                    f"tokenizer was given num_{side}_codebooks={num_codebooks} and {side}_codebook_size="
                    f"{codebook_size}. Drop those arguments to use the quantizer's, or pass the matching quantizer."
                )
        if num_codebooks is None or codebook_size is None:
            raise ValueError(
                f"The number of {side} codebooks (K) and their size (L) are unknown: pass num_{side}_codebooks and "
                f"{side}_codebook_size, or a {side}_quantizer."
            )
        num_codebooks, codebook_size = _check_codebook_shape(side, num_codebooks, codebook_size)
        token_format = _check_token_format(side, token_format)

        source = f"the {side} MQ-Tokenizer (K={num_codebooks}, L={codebook_size})" if quantizer else f"{side}_codes"
        if codes is None:
            codes = torch.empty(0, num_codebooks, dtype=torch.long)
        codes = _check_codes(codes, num_codebooks, codebook_size, side, source)
        ids = _check_ids(ids, codes.shape[0], side, f"{side}_ids")
        return _EntityTable(side, num_codebooks, codebook_size, token_format, codes, ids, quantizer)

    def _add_id_tokens(self) -> None:
        """Add every ID token to the base tokenizer and check that each encodes to exactly one id."""
        names = [name for table in (self._users, self._items) for row in table.token_names for name in row]
        self.base_tokenizer.add_tokens(
            [
                AddedToken(name, single_word=False, lstrip=False, rstrip=False, normalized=False, special=False)
                for name in names
            ]
        )

        encoded = self.base_tokenizer(names, add_special_tokens=False)["input_ids"]
        broken = [name for name, ids in zip(names, encoded, strict=True) if len(ids) != 1]
        if broken:
            raise ValueError(
                f"ID tokens {broken[:5]} do not encode to exactly one id with the base tokenizer "
                f"{type(self.base_tokenizer).__name__}; it splits them before matching added tokens. Use a "
                "tokenizer that supports added tokens (such as T5's fast tokenizer)."
            )

        flat = torch.tensor([ids[0] for ids in encoded], dtype=torch.long)
        user_count = self._users.num_codebooks * self._users.codebook_size
        self._users.token_ids = flat[:user_count].view(self._users.num_codebooks, self._users.codebook_size)
        self._items.token_ids = flat[user_count:].view(self._items.num_codebooks, self._items.codebook_size)
        if flat.unique().numel() != flat.numel():
            raise ValueError("Two ID tokens encode to the same id; the base tokenizer already defines some of them.")

    def _set_templates(self, templates: Sequence[str] | None, unseen_template_id: int | None) -> None:
        templates = list(DEFAULT_TEMPLATES if templates is None else templates)
        if not templates:
            raise ValueError("templates is empty; pass at least one prompt template with a {user} placeholder.")
        for template in templates:
            validate_template(template)
        if unseen_template_id is not None and not (
            isinstance(unseen_template_id, int) and 0 <= unseen_template_id < len(templates)
        ):
            raise ValueError(
                f"unseen_template_id must be None or an index in [0, {len(templates)}), got {unseen_template_id!r}."
            )
        self._templates = tuple(templates)
        self._uses_history = tuple(template_uses_history(template) for template in templates)
        self._unseen_template_id = unseen_template_id
        if not self.seen_template_ids:
            raise ValueError("Every template is held out; keep at least one template for training.")

        for template in templates:
            user = self._users.token_names
            example = format_prompt(
                template,
                "".join(row[-1] for row in user),
                ["".join(row[-1] for row in self._items.token_names)] * 2,
            )
            stray = self.stray_space_positions(example)
            if stray:
                logger.warning(
                    f"Prompt template {template!r} encodes with {len(stray)} stray '▁' token(s) next to ID tokens with "
                    f"{type(self.base_tokenizer).__name__}: the word after a placeholder is not a single piece in "
                    "this vocabulary. Reword the template to avoid wasting positions on them."
                )

    # Sizes and tables.

    @property
    def num_user_codebooks(self) -> int:
        """K of the user ID tokens."""
        return self._users.num_codebooks

    @property
    def user_codebook_size(self) -> int:
        """L of the user ID tokens."""
        return self._users.codebook_size

    @property
    def num_item_codebooks(self) -> int:
        """K of the item ID tokens."""
        return self._items.num_codebooks

    @property
    def item_codebook_size(self) -> int:
        """L of the item ID tokens."""
        return self._items.codebook_size

    @property
    def num_users(self) -> int:
        """Number of users with a code."""
        return len(self._users.ids)

    @property
    def num_items(self) -> int:
        """Number of items with a code."""
        return len(self._items.ids)

    @property
    def user_ids(self) -> list[str]:
        """Raw user ids, in code-table order."""
        return list(self._users.ids)

    @property
    def item_ids(self) -> list[str]:
        """Raw item ids, in code-table order."""
        return list(self._items.ids)

    @property
    def user_codes(self) -> torch.LongTensor:
        """User code table of shape `(num_users, num_user_codebooks)`."""
        return self._users.codes

    @property
    def item_codes(self) -> torch.LongTensor:
        """Item code table of shape `(num_items, num_item_codebooks)`."""
        return self._items.codes

    @property
    def user_quantizer(self) -> Any | None:
        """User MQ-Tokenizer, or `None` when new users cannot be tokenized."""
        return self._users.quantizer

    @property
    def item_quantizer(self) -> Any | None:
        """Item MQ-Tokenizer, or `None` when new items cannot be tokenized."""
        return self._items.quantizer

    @property
    def user_token_ids(self) -> torch.LongTensor:
        """Vocabulary ids of the user ID tokens, shape `(K, L)`: entry `[k, l]` is the id of `<u{k+1}-{l}>`."""
        return self._users.token_ids.clone()

    @property
    def item_token_ids(self) -> torch.LongTensor:
        """Vocabulary ids of the item ID tokens, shape `(K, L)`: entry `[k, l]` is the id of `<v{k+1}-{l}>`."""
        return self._items.token_ids.clone()

    def user_index(self, user: str | int) -> int:
        """Return the code-table row of `user` (a raw id string, or an index that is checked and returned)."""
        return self._users.resolve(user)

    def item_index(self, item: str | int) -> int:
        """Return the code-table row of `item` (a raw id string, or an index that is checked and returned)."""
        return self._items.resolve(item)

    def user_token_string(self, user: str | int) -> str:
        """Return the K ID tokens of `user` as one string, for example `"<u1-5><u2-0><u3-17>"`.

        Args:
            user: A raw user id (string) or a code-table index (integer).

        Raises:
            KeyError: When the raw id is unknown; the message explains how to tokenize a new user.
            IndexError: When the index is out of range.
        """
        return self._users.token_string(self._users.resolve(user))

    def item_token_string(self, item: str | int) -> str:
        """Return the K ID tokens of `item` as one string, for example `"<v1-42><v2-12><v3-98>"`.

        Args:
            item: A raw item id (string) or a code-table index (integer).

        Raises:
            KeyError: When the raw id is unknown; the message explains how to tokenize a new item.
            IndexError: When the index is out of range.
        """
        return self._items.token_string(self._items.resolve(item))

    # New users and items.

    def _check_embeddings(self, table: _EntityTable, embeddings: Any, ids: Sequence[str] | None) -> torch.Tensor:
        if table.quantizer is None:
            raise ValueError(
                f"This tokenizer has no {table.side} MQ-Tokenizer, so it cannot tokenize new {table.plural}. Build it "
                f"with `TokenRecTokenizer.from_quantizers(...)` or pass `{table.side}_quantizer=`."
            )
        embeddings = torch.as_tensor(embeddings)
        input_dim = int(table.quantizer.config.input_dim)
        if embeddings.ndim != 2 or embeddings.shape[1] != input_dim:
            raise ValueError(
                f"Expected {table.side} embeddings of shape [N, {input_dim}] (input_dim of the {table.side} "
                f"MQ-Tokenizer), got shape {tuple(embeddings.shape)}. Use embeddings from the collaborative model "
                "that the MQ-Tokenizer was trained on."
            )
        if not embeddings.is_floating_point():
            embeddings = embeddings.float()
        finite = torch.isfinite(embeddings)
        if not bool(finite.all()):
            row, column = (int(value) for value in (~finite).nonzero()[0])
            name = f" (id {ids[row]!r})" if ids is not None and row < len(ids) else ""
            raise ValueError(
                f"{table.side} embedding row {row}{name} has the value {float(embeddings[row, column])} in column "
                f"{column}; embeddings must be finite. Fix or drop that row before tokenizing it."
            )
        return embeddings

    def _encode_embeddings(self, table: _EntityTable, embeddings: torch.Tensor) -> torch.LongTensor:
        codes = table.quantizer.encode(embeddings)
        return _check_codes(
            codes, table.num_codebooks, table.codebook_size, table.side, f"the {table.side} MQ-Tokenizer"
        )

    def encode_new_users(self, embeddings: torch.Tensor) -> list[str]:
        """Tokenize users from their collaborative embeddings without adding them.

        Args:
            embeddings (`torch.Tensor` of shape `(N, input_dim)`): Collaborative embeddings of the users.

        Returns:
            One ID-token string per row.

        Raises:
            ValueError: When there is no user MQ-Tokenizer, or the embeddings have the wrong width or a non-finite value.
        """
        codes = self._encode_embeddings(self._users, self._check_embeddings(self._users, embeddings, None))
        return [self._users.codes_to_string(row) for row in codes]

    def encode_new_items(self, embeddings: torch.Tensor) -> list[str]:
        """Tokenize items from their collaborative embeddings without adding them. See `encode_new_users`."""
        codes = self._encode_embeddings(self._items, self._check_embeddings(self._items, embeddings, None))
        return [self._items.codes_to_string(row) for row in codes]

    def _add(self, table: _EntityTable, embeddings: Any, ids: Sequence[str], overwrite: bool) -> torch.LongTensor:
        if isinstance(ids, str) or not isinstance(ids, Sequence):
            raise ValueError(f"{table.side}_ids must be a list of raw ids, got {type(ids).__name__}: {ids!r}.")
        ids = [str(raw_id) for raw_id in ids]
        embeddings = self._check_embeddings(table, embeddings, ids)
        rows = embeddings.shape[0]
        if len(ids) != rows:
            raise ValueError(
                f"Got {rows} {table.side} embeddings but {len(ids)} {table.side}_ids; pass one id per embedding row."
            )
        if len(set(ids)) != len(ids):
            duplicate = next(raw_id for raw_id in ids if ids.count(raw_id) > 1)
            raise ValueError(f"{table.side}_ids contains {duplicate!r} more than once; ids must be unique.")
        existing = [raw_id for raw_id in ids if raw_id in table.index]
        if existing and not overwrite:
            raise ValueError(
                f"{table.side} ids {existing[:5]} already have codes. Pass overwrite=True to re-tokenize them from the "
                "new embeddings."
            )

        codes = self._encode_embeddings(table, embeddings)
        positions = []
        new_rows = []
        for raw_id, row in zip(ids, codes, strict=True):
            if raw_id in table.index:
                table.codes[table.index[raw_id]] = row
            else:
                table.index[raw_id] = len(table.ids)
                table.ids.append(raw_id)
                new_rows.append(row)
            positions.append(table.index[raw_id])
        if new_rows:
            table.codes = torch.cat([table.codes, torch.stack(new_rows)])
        return torch.tensor(positions, dtype=torch.long)

    def add_users(
        self, embeddings: torch.Tensor, user_ids: Sequence[str], overwrite: bool = False
    ) -> torch.LongTensor:
        """Tokenize new users through the frozen user MQ-Tokenizer and add them to the code table.

        Args:
            embeddings (`torch.Tensor` of shape `(N, input_dim)`): Collaborative embeddings of the users, for example
                from `CollaborativeModel.fold_in_users(histories)`.
            user_ids (`list[str]`): Raw ids of the N users.
            overwrite (`bool`, *optional*, defaults to `False`): Re-tokenize users that already have codes.

        Returns:
            `torch.LongTensor` of shape `(N,)`: the code-table index of each user.

        Raises:
            ValueError: When there is no user MQ-Tokenizer, the embeddings are invalid, ids and rows do not match, or
                an id already exists and `overwrite=False`.
        """
        return self._add(self._users, embeddings, user_ids, overwrite)

    def add_items(
        self, embeddings: torch.Tensor, item_ids: Sequence[str], overwrite: bool = False
    ) -> torch.LongTensor:
        """Tokenize new items through the frozen item MQ-Tokenizer and add them to the code table. See `add_users`."""
        return self._add(self._items, embeddings, item_ids, overwrite)

    # Prompts.

    @property
    def templates(self) -> tuple[str, ...]:
        """All prompt templates, training and held-out ones."""
        return self._templates

    @property
    def unseen_template_id(self) -> int | None:
        """Index of the template held out of training (the unseen prompt), or `None`."""
        return self._unseen_template_id

    @property
    def seen_template_ids(self) -> list[int]:
        """Indices of the templates used in training."""
        return [index for index in range(len(self._templates)) if index != self._unseen_template_id]

    @property
    def user_only_template_ids(self) -> list[int]:
        """Indices of the templates with the user's ID tokens only."""
        return [index for index, uses_history in enumerate(self._uses_history) if not uses_history]

    @property
    def history_template_ids(self) -> list[int]:
        """Indices of the templates with the user's ID tokens and their history."""
        return [index for index, uses_history in enumerate(self._uses_history) if uses_history]

    def build_prompt(
        self,
        user: str | int,
        history: Sequence[str | int] | None = None,
        template: int | str | None = None,
        rng: random.Random | int | None = None,
        max_history_tokens: int | None = None,
        shuffle: bool = True,
    ) -> str:
        """Fill a prompt template with the ID tokens of a user and of their past items.

        The history keeps the most recent items whose ID tokens fit in `max_history_tokens`, then is shuffled, so
        the backbone does not rely on the order of interactions (as in the TokenRec paper).

        Args:
            user: Raw user id (string) or code-table index (integer).
            history: The user's past items, oldest first, as raw ids or indices. `None` or empty allows only
                templates without `{history}`.
            template: A template index, a template string, or `None` to draw one of the training templates with
                `rng` (only user-only ones when the history is empty).
            rng: A `random.Random`, an integer seed, or `None` for a fresh unseeded generator.
            max_history_tokens: Budget of history ID tokens. It keeps the `max_history_tokens // K` most recent items.
            shuffle: Whether to shuffle the kept history items.

        Returns:
            The prompt text, ready for `tokenizer(...)`.

        Raises:
            KeyError: When the user or an item is unknown (the message explains how to add it).
            ValueError: When the template is invalid or needs a history that is empty, or the budget is below one
                item's K tokens.
        """
        rng = make_rng(rng)
        history = [] if history is None else list(history)
        template_text = self._choose_template(template, has_history=bool(history), rng=rng)
        user_tokens = self.user_token_string(user)
        if not template_uses_history(template_text):
            return format_prompt(template_text, user_tokens)

        max_items = None
        if max_history_tokens is not None:
            if isinstance(max_history_tokens, bool) or not isinstance(max_history_tokens, int):
                raise ValueError(f"max_history_tokens must be an integer or None, got {max_history_tokens!r}.")
            if max_history_tokens < self.num_item_codebooks:
                raise ValueError(
                    f"max_history_tokens={max_history_tokens} is below the {self.num_item_codebooks} ID tokens of one "
                    f"item; pass at least {self.num_item_codebooks}, or None for the whole history."
                )
            max_items = max_history_tokens // self.num_item_codebooks
        kept = select_history(history, max_items, rng=rng, shuffle=shuffle)
        return format_prompt(template_text, user_tokens, [self.item_token_string(item) for item in kept])

    def _choose_template(self, template: int | str | None, has_history: bool, rng: random.Random) -> str:
        if template is None:
            candidates = self.seen_template_ids
            if not has_history:
                candidates = [index for index in candidates if not self._uses_history[index]]
            if not candidates:
                raise ValueError(
                    "The history is empty and every training template needs one; pass a history, or pass `template=` "
                    "with a template that has no {history} placeholder."
                )
            return self._templates[rng.choice(candidates)]
        if _is_index(template):
            if not 0 <= int(template) < len(self._templates):
                raise IndexError(
                    f"Template index {int(template)} is out of range; this tokenizer has {len(self._templates)} "
                    f"templates (0 to {len(self._templates) - 1})."
                )
            return self._templates[int(template)]
        return validate_template(template)

    def stray_space_positions(self, text_or_ids: str | Sequence[int]) -> list[int]:
        """Return the positions of lone `▁` tokens that sit next to an ID token.

        Such tokens carry no meaning and appear when punctuation directly follows an ID token in T5-style
        tokenizers. A prompt built from the default templates has none with the T5 vocabulary.

        Args:
            text_or_ids: A prompt, or the ids it encodes to.

        Returns:
            Positions in the id sequence (without special tokens when a text is given).
        """
        if isinstance(text_or_ids, str):
            ids = self.base_tokenizer(text_or_ids, add_special_tokens=False)["input_ids"]
        else:
            ids = [int(value) for value in text_or_ids]
        space_id = self.base_tokenizer.convert_tokens_to_ids("▁")
        if space_id is None or space_id == self.base_tokenizer.unk_token_id:
            return []
        id_token_ids = set(self._users.token_ids.flatten().tolist()) | set(self._items.token_ids.flatten().tolist())
        positions = []
        for position, token_id in enumerate(ids):
            if token_id != space_id:
                continue
            neighbours = ids[max(position - 1, 0) : position] + ids[position + 1 : position + 2]
            if any(neighbour in id_token_ids for neighbour in neighbours):
                positions.append(position)
        return positions

    # Building, saving and loading.

    @classmethod
    def from_quantizers(
        cls,
        base_name_or_path: PreTrainedTokenizerBase | str | os.PathLike,
        user_quantizer: Any,
        item_quantizer: Any,
        user_embeddings: torch.Tensor,
        item_embeddings: torch.Tensor,
        user_ids: Sequence[str] | None = None,
        item_ids: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> TokenRecTokenizer:
        """Tokenize every user and item through trained MQ-Tokenizers and build the tokenizer.

        Args:
            base_name_or_path: The text tokenizer, or a local folder or Hub id to load it from.
            user_quantizer, item_quantizer (`MQTokenizer`): Trained MQ-Tokenizers; they set K and L of each side.
            user_embeddings (`torch.Tensor` of shape `(num_users, input_dim)`): Collaborative user representations.
            item_embeddings (`torch.Tensor` of shape `(num_items, input_dim)`): Collaborative item representations.
            user_ids, item_ids (`list[str]`, *optional*): Raw ids of the rows, defaulting to `"0"`, `"1"`, ...
            kwargs: Other `TokenRecTokenizer` arguments (`templates`, `unseen_template_id`, token formats).

        Returns:
            A `TokenRecTokenizer` whose code tables hold every user and item.

        Raises:
            ValueError: When an embedding table has the wrong width or a non-finite value, or ids do not match rows.
        """
        tokenizer = cls(base_name_or_path, user_quantizer=user_quantizer, item_quantizer=item_quantizer, **kwargs)
        for table, embeddings, ids in (
            (tokenizer._users, user_embeddings, user_ids),
            (tokenizer._items, item_embeddings, item_ids),
        ):
            rows = torch.as_tensor(embeddings).shape[0]
            ids = _check_ids(ids, rows, table.side, f"{table.side}_ids")
            tokenizer._add(table, embeddings, ids, overwrite=False)
        return tokenizer

    def _config_dict(self, base_files: list[str]) -> dict[str, Any]:
        config: dict[str, Any] = {
            "tokenizer_class": type(self).__name__,
            "base_tokenizer_class": type(self.base_tokenizer).__name__,
            "base_tokenizer_files": sorted(base_files),
            "templates": list(self._templates),
            "unseen_template_id": self._unseen_template_id,
        }
        for table in (self._users, self._items):
            config[f"num_{table.side}_codebooks"] = table.num_codebooks
            config[f"{table.side}_codebook_size"] = table.codebook_size
            config[f"{table.side}_token_format"] = table.token_format
            config[f"num_{table.plural}"] = len(table.ids)
            quantizer_folder = USER_QUANTIZER_FOLDER if table.side == "user" else ITEM_QUANTIZER_FOLDER
            config[f"{table.side}_quantizer"] = quantizer_folder if table.quantizer is not None else None
        config.update(package_version_stamp())
        return config

    def save_pretrained(
        self, save_directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any
    ) -> tuple[str, ...]:
        """Save the base tokenizer, the ID-token configuration, the code tables, the id maps and the MQ-Tokenizers.

        The folder contains the base tokenizer's files (`tokenizer.json`, `tokenizer_config.json` for T5, with
        `"tokenizer_class": "TokenRecTokenizer"`), `tokenrec_tokenizer_config.json`, `user_codes.safetensors`,
        `item_codes.safetensors`, `user_ids.json`, `item_ids.json`, and the subfolders `user_quantizer/` and
        `item_quantizer/` when the tokenizer has MQ-Tokenizers. Everything is written to a staging folder first and
        moved into place at the end, so an interrupted save leaves the previous files intact.

        Args:
            save_directory: Target folder. Files of other artifacts in it (a model's `config.json`) are kept.
            push_to_hub: Whether to upload the saved files to the Hub afterwards.
            kwargs: `repo_id` (defaults to the folder name), `commit_message`, `commit_description`, `token`,
                `private`, `create_pr` and `revision` for the upload.

        Returns:
            The paths of the saved files and folders.
        """
        hub_kwargs = {name: kwargs.pop(name) for name in _HUB_KWARGS if name in kwargs}
        # `PushToHubMixin.push_to_hub` passes max_shard_size; the tables are small and never sharded.
        kwargs.pop("max_shard_size", None)
        if kwargs:
            logger.warning(f"TokenRecTokenizer.save_pretrained ignores the unknown arguments {sorted(kwargs)}.")
        save_directory = Path(save_directory)
        if save_directory.is_file():
            raise NotADirectoryError(f"Cannot save the tokenizer into {save_directory}: it is a file. Pass a folder.")

        with atomic_directory(save_directory) as staging:
            base_files = [Path(path).name for path in self.base_tokenizer.save_pretrained(staging)]
            tokenizer_config = load_json(staging / "tokenizer_config.json", "base tokenizer configuration")
            tokenizer_config["tokenizer_class"] = type(self).__name__
            atomic_write_json(staging / "tokenizer_config.json", tokenizer_config)

            atomic_write_json(staging / TOKENIZER_CONFIG_NAME, self._config_dict(base_files))
            for table, codes_name, ids_name in (
                (self._users, USER_CODES_NAME, USER_IDS_NAME),
                (self._items, ITEM_CODES_NAME, ITEM_IDS_NAME),
            ):
                metadata = {"side": table.side, "token_format": table.token_format, **package_version_stamp()}
                save_safetensors_atomic(
                    {"codes": table.codes, "token_ids": table.token_ids}, staging / codes_name, metadata=metadata
                )
                atomic_write_json(staging / ids_name, table.ids)
            if self._users.quantizer is not None:
                self._users.quantizer.save_pretrained(staging / USER_QUANTIZER_FOLDER)
            if self._items.quantizer is not None:
                self._items.quantizer.save_pretrained(staging / ITEM_QUANTIZER_FOLDER)
            saved = tuple(str(save_directory / entry.name) for entry in sorted(staging.iterdir()))

        # A quantizer folder left by an earlier save would otherwise sit next to a config that no longer names it.
        for table, folder_name in ((self._users, USER_QUANTIZER_FOLDER), (self._items, ITEM_QUANTIZER_FOLDER)):
            if table.quantizer is None and (save_directory / folder_name).is_dir():
                shutil.rmtree(save_directory / folder_name)

        if push_to_hub:
            repo_id = hub_kwargs.pop("repo_id", save_directory.absolute().name)
            private = hub_kwargs.pop("private", None)
            repo = hf_api().create_repo(repo_id, private=private, token=hub_kwargs.get("token"), exist_ok=True)
            repo_id = repo.repo_id
            # Upload only what this save wrote, not other artifacts that share the folder.
            written = {Path(path).name for path in saved}
            timestamps = {name: float("inf") for name in os.listdir(save_directory) if name not in written}
            self._upload_modified_files(save_directory, repo_id, timestamps, **hub_kwargs)
        return saved

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *inputs: Any,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **kwargs: Any,
    ) -> TokenRecTokenizer:
        """Load a tokenizer written by `save_pretrained`, from a local folder or a Hub repository.

        Args:
            pretrained_model_name_or_path: A local folder, or a Hub id such as `"user/tokenrec-lastfm"`.
            revision, cache_dir, token, local_files_only: Hub download options.
            kwargs: Other arguments go to the base tokenizer's `from_pretrained` (for example `padding_side`).
                Arguments that `AutoTokenizer` adds are accepted and ignored.

        Returns:
            The tokenizer, encoding the same prompts to the same ids as the one that was saved.

        Raises:
            HubUnreachableError: When a Hub id cannot be downloaded (for example offline); the message says how to
                load from a local folder.
            FileNotFoundError: When a required file is missing.
            ValueError: When a file is corrupted or the files disagree (code tables and K, L, or token ids).
        """
        for name in _AUTO_KWARGS:
            kwargs.pop(name, None)
        folder = resolve_pretrained_folder(
            pretrained_model_name_or_path,
            required_files=("tokenizer_config.json", TOKENIZER_CONFIG_NAME, *cls.vocab_files_names.values()),
            artifact="TokenRecTokenizer",
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
        config = load_json(folder / TOKENIZER_CONFIG_NAME, "TokenRec tokenizer configuration")
        if not isinstance(config, dict):
            raise ValueError(
                f"{folder / TOKENIZER_CONFIG_NAME} must contain a JSON object, got {type(config).__name__}."
            )
        check_artifact_version(config.get("tokenrec_hf_version"), f"TokenRec tokenizer at {folder}")
        missing_keys = sorted(key for key in _REQUIRED_CONFIG_KEYS if key not in config)
        if missing_keys:
            raise ValueError(
                f"{folder / TOKENIZER_CONFIG_NAME} lacks the keys {missing_keys}. The file is incomplete; save the "
                "tokenizer again with `save_pretrained`."
            )

        base_tokenizer = _load_saved_base_tokenizer(folder, config, kwargs)
        tables = {side: _load_side(folder, config, side) for side in ("user", "item")}
        tokenizer = cls(
            base_tokenizer,
            num_user_codebooks=config["num_user_codebooks"],
            user_codebook_size=config["user_codebook_size"],
            num_item_codebooks=config["num_item_codebooks"],
            item_codebook_size=config["item_codebook_size"],
            user_codes=tables["user"]["codes"],
            item_codes=tables["item"]["codes"],
            user_ids=tables["user"]["ids"],
            item_ids=tables["item"]["ids"],
            user_quantizer=tables["user"]["quantizer"],
            item_quantizer=tables["item"]["quantizer"],
            templates=config["templates"],
            unseen_template_id=config["unseen_template_id"],
            user_token_format=config["user_token_format"],
            item_token_format=config["item_token_format"],
        )

        for side, table in (("user", tokenizer._users), ("item", tokenizer._items)):
            saved_ids = tables[side]["token_ids"]
            if saved_ids.shape != table.token_ids.shape or not torch.equal(saved_ids, table.token_ids):
                raise ValueError(
                    f"The {side} ID tokens in {folder} have vocabulary ids that differ from those recorded in "
                    f"{USER_CODES_NAME if side == 'user' else ITEM_CODES_NAME}: the base tokenizer files and the code "
                    "tables come from different saves. Save the tokenizer again with `save_pretrained`."
                )
        return tokenizer

    # Delegation to the base tokenizer.

    def __len__(self) -> int:
        """Vocabulary size including the ID tokens; the backbone's embedding matrix needs this many rows."""
        return len(self.base_tokenizer)

    @property
    def pad_token_id(self) -> int | None:
        """Padding id of the base tokenizer."""
        return self.base_tokenizer.pad_token_id

    @property
    def eos_token_id(self) -> int | None:
        """End-of-sequence id of the base tokenizer."""
        return self.base_tokenizer.eos_token_id

    @property
    def model_input_names(self) -> list[str]:
        """Names of the model inputs the base tokenizer returns."""
        return self.base_tokenizer.model_input_names

    @property
    def padding_side(self) -> str:
        """Side that padding is added to."""
        return self.base_tokenizer.padding_side

    def __call__(
        self,
        text: str | list[str],
        padding: bool | str = True,
        truncation: bool | str = False,
        max_length: int | None = None,
        return_tensors: str | None = "pt",
        **kwargs: Any,
    ) -> Any:
        """Encode prompts with the base tokenizer, padding a batch to its longest prompt.

        Truncation can cut an item's ID tokens in half; bound the prompt length with `max_history_tokens` in
        `build_prompt` instead where possible. Other keyword arguments go to the base tokenizer.
        """
        return self.base_tokenizer(
            text,
            padding=padding,
            truncation=truncation,
            max_length=max_length,
            return_tensors=return_tensors,
            **kwargs,
        )

    def pad(self, encoded_inputs: Any, **kwargs: Any) -> Any:
        """Pad already encoded inputs with the base tokenizer (as `DataCollatorWithPadding` calls it)."""
        return self.base_tokenizer.pad(encoded_inputs, **kwargs)

    def decode(self, token_ids: Any, **kwargs: Any) -> str:
        """Decode ids to text with the base tokenizer; ID tokens come back by name."""
        return self.base_tokenizer.decode(token_ids, **kwargs)

    def batch_decode(self, sequences: Any, **kwargs: Any) -> list[str]:
        """Decode a batch of id sequences with the base tokenizer."""
        return self.base_tokenizer.batch_decode(sequences, **kwargs)

    def convert_ids_to_tokens(self, ids: Any, **kwargs: Any) -> Any:
        """Map ids to token names with the base tokenizer."""
        return self.base_tokenizer.convert_ids_to_tokens(ids, **kwargs)

    def convert_tokens_to_ids(self, tokens: Any) -> Any:
        """Map token names to ids with the base tokenizer."""
        return self.base_tokenizer.convert_tokens_to_ids(tokens)

    def get_vocab(self) -> dict[str, int]:
        """Vocabulary of the base tokenizer, including the ID tokens."""
        return self.base_tokenizer.get_vocab()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(base={type(self.base_tokenizer).__name__}, vocab_size={len(self)}, "
            f"users={self.num_users} (K={self.num_user_codebooks}, L={self.user_codebook_size}), "
            f"items={self.num_items} (K={self.num_item_codebooks}, L={self.item_codebook_size}), "
            f"templates={len(self._templates)}, unseen_template_id={self._unseen_template_id})"
        )


_REQUIRED_CONFIG_KEYS = (
    "base_tokenizer_class",
    "base_tokenizer_files",
    "templates",
    "unseen_template_id",
    "num_user_codebooks",
    "user_codebook_size",
    "user_token_format",
    "num_users",
    "user_quantizer",
    "num_item_codebooks",
    "item_codebook_size",
    "item_token_format",
    "num_items",
    "item_quantizer",
)


def _load_saved_base_tokenizer(
    folder: Path, config: dict[str, Any], kwargs: dict[str, Any]
) -> PreTrainedTokenizerBase:
    missing = sorted(name for name in config["base_tokenizer_files"] if not (folder / name).is_file())
    if missing:
        raise FileNotFoundError(
            f"The TokenRec tokenizer folder {folder} is missing the base tokenizer files {missing}. Save the "
            "tokenizer again with `save_pretrained`."
        )
    base_class = tokenizer_class_from_name(config["base_tokenizer_class"])
    if base_class is None:
        raise ValueError(
            f"{folder / TOKENIZER_CONFIG_NAME} names the base tokenizer class {config['base_tokenizer_class']!r}, "
            "which this transformers version does not provide."
        )
    try:
        return base_class.from_pretrained(folder, **kwargs)
    except Exception as error:  # noqa: BLE001 - `tokenizers` raises plain `Exception` on malformed files.
        raise ValueError(
            f"Could not load the base tokenizer files {config['base_tokenizer_files']} in {folder} "
            f"({type(error).__name__}: {error}). They are probably corrupted; save the tokenizer again with "
            "`save_pretrained`."
        ) from error


def _load_side(folder: Path, config: dict[str, Any], side: str) -> dict[str, Any]:
    """Load the code table, vocabulary ids, raw ids and MQ-Tokenizer of one side from a saved folder."""
    codes_path = folder / (USER_CODES_NAME if side == "user" else ITEM_CODES_NAME)
    try:
        tensors = load_file(codes_path)
    except (SafetensorError, OSError) as error:
        raise ValueError(
            f"Could not read {codes_path} ({type(error).__name__}: {error}). The file is corrupted; save the "
            "tokenizer again with `save_pretrained`."
        ) from error
    missing = sorted({"codes", "token_ids"} - set(tensors))
    if missing:
        raise ValueError(f"{codes_path} lacks the tensors {missing}; save the tokenizer again with `save_pretrained`.")

    ids_path = folder / (USER_IDS_NAME if side == "user" else ITEM_IDS_NAME)
    ids = load_json(ids_path, f"{side} id map")
    if not isinstance(ids, list):
        raise ValueError(f"{ids_path} must contain a JSON list of {side} ids, got {type(ids).__name__}.")
    if len(ids) != config[f"num_{side}s"] or len(ids) != tensors["codes"].shape[0]:
        raise ValueError(
            f"{ids_path} lists {len(ids)} {side}s, {codes_path.name} has {tensors['codes'].shape[0]} code rows and "
            f"{TOKENIZER_CONFIG_NAME} records {config[f'num_{side}s']}. The files come from different saves; save "
            "the tokenizer again with `save_pretrained`."
        )

    quantizer = None
    if config[f"{side}_quantizer"] is not None:
        from .quantization import MQTokenizer

        quantizer_folder = folder / str(config[f"{side}_quantizer"])
        if not quantizer_folder.is_dir():
            raise FileNotFoundError(
                f"{TOKENIZER_CONFIG_NAME} in {folder} records a {side} MQ-Tokenizer in {quantizer_folder.name}/, "
                "but that folder is missing. Save the tokenizer again with `save_pretrained`."
            )
        quantizer = MQTokenizer.from_pretrained(quantizer_folder)
        quantizer.eval()
    return {"codes": tensors["codes"], "token_ids": tensors["token_ids"], "ids": ids, "quantizer": quantizer}
