"""Tiny, aligned TokenRec components for the training tests: a split, a tokenizer and a model built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import T5Config

from tokenrec_hf.data import InteractionData
from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval
from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer

NUM_CODEBOOKS, CODEBOOK_SIZE = 3, 4
COLLABORATIVE_DIM = 16


def make_tiny_split(num_users: int = 6, num_items: int = 20, seed: int = 0) -> InteractionData:
    """Build a leave-one-out split whose users have 3 to 8 training items and distinct validation and test targets."""
    rng = np.random.default_rng(seed)
    train, valid, test = [], [], []
    for user in range(num_users):
        length = 5 + user % 6
        items = rng.choice(num_items, size=length, replace=False).tolist()
        train.append(items[:-2])
        valid.append(items[-2])
        test.append(items[-1])
    return InteractionData(
        name="tiny",
        user_ids=[f"u{user}" for user in range(num_users)],
        item_ids=[f"i{item}" for item in range(num_items)],
        train=train,
        valid=valid,
        test=test,
    )


def unique_codes(count: int, num_codebooks: int, codebook_size: int, generator: torch.Generator) -> torch.Tensor:
    """Give `count` rows distinct random codes, so an ID-token string names exactly one user or item."""
    if count > codebook_size**num_codebooks:
        raise ValueError(f"{count} rows cannot have distinct codes with K={num_codebooks}, L={codebook_size}.")
    numbers = torch.randperm(codebook_size**num_codebooks, generator=generator)[:count]
    powers = codebook_size ** torch.arange(num_codebooks - 1, -1, -1)
    return numbers[:, None] // powers % codebook_size  # [count, K]


def make_tiny_tokenizer(
    base_tokenizer_dir: str | Path, data: InteractionData, seed: int = 0, codebook_size: int = CODEBOOK_SIZE
) -> TokenRecTokenizer:
    """Build a TokenRecTokenizer with distinct random codes for the split's users and items (no MQ-Tokenizers)."""
    generator = torch.Generator().manual_seed(seed)
    return TokenRecTokenizer(
        str(base_tokenizer_dir),
        num_user_codebooks=NUM_CODEBOOKS,
        user_codebook_size=codebook_size,
        num_item_codebooks=NUM_CODEBOOKS,
        item_codebook_size=codebook_size,
        user_codes=unique_codes(data.num_users, NUM_CODEBOOKS, codebook_size, generator),
        item_codes=unique_codes(data.num_items, NUM_CODEBOOKS, codebook_size, generator),
        user_ids=list(data.user_ids),
        item_ids=list(data.item_ids),
    )


def make_tiny_model(
    tokenizer: TokenRecTokenizer, seed: int = 0, dropout_rate: float = 0.0, **config_kwargs
) -> TokenRecForRetrieval:
    """Build a random-init TokenRecForRetrieval with a 2-layer, d_model 32 T5 and a random item table."""
    item_table = torch.randn(tokenizer.num_items, COLLABORATIVE_DIM, generator=torch.Generator().manual_seed(seed + 1))
    backbone = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=64,
        num_layers=2,
        num_heads=4,
        d_kv=8,
        dropout_rate=dropout_rate,
    )
    torch.manual_seed(seed)
    return TokenRecForRetrieval.from_backbone(
        backbone, tokenizer, item_table, projection_hidden_sizes=(32, 32), **config_kwargs
    )
