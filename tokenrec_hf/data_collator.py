"""Training examples, their sampler and the data collator for fine-tuning a TokenRec backbone.

Training uses only the training items of each user. The validation and test targets never appear in a training prompt
or as a positive. Evaluation rows use the validation protocol: the history is the training items and the target is the
validation item. At test time the history is the training items plus the validation item.

All randomness (which training item is the target, the template, the history order, the negatives) comes from
per-example seeds derived from `(seed, epoch, example index)`. A batch therefore does not depend on the number of
processes or dataloader workers, or on whether training was resumed from a checkpoint.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from transformers.utils import logging

if TYPE_CHECKING:
    from .data import InteractionData
    from .tokenization_tokenrec import TokenRecTokenizer

logger = logging.get_logger(__name__)

__all__ = [
    "EXAMPLE_SAMPLING_MODES",
    "EpochSeededRandomSampler",
    "TokenRecDataCollator",
    "TokenRecEvaluationDataset",
    "TokenRecTrainingDataset",
    "example_seed",
    "sample_negatives",
]

EXAMPLE_SAMPLING_MODES = ("one_per_user", "all_items")
EVALUATION_STAGES = ("valid", "test")

# Separate streams so that, for example, changing the number of negatives leaves the prompts unchanged.
_TARGET_STREAM, _PROMPT_STREAM, _NEGATIVE_STREAM = 0, 1, 2


def example_seed(*keys: int) -> int:
    """Derive a 63-bit seed from integer keys such as `(seed, epoch, index)` with NumPy's `SeedSequence`."""
    state = np.random.SeedSequence([int(key) for key in keys]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def _numpy_rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def sample_negatives(
    num_items: int,
    excluded: set[int] | Sequence[int],
    num_negatives: int,
    rng: np.random.Generator,
) -> list[int]:
    """Sample `num_negatives` distinct items uniformly from `range(num_items)` minus `excluded`.

    Draws with replacement only when fewer than `num_negatives` items are left.

    Args:
        num_items: Size of the item catalog.
        excluded: Item indices that must not be drawn (the user's training items).
        num_negatives: How many items to draw.
        rng: The generator to draw from.

    Returns:
        The sampled item indices.

    Raises:
        ValueError: When every item in the catalog is excluded.
    """
    excluded = set(excluded)
    num_allowed = num_items - len({item for item in excluded if 0 <= item < num_items})
    if num_allowed <= 0:
        raise ValueError(
            f"Cannot sample negatives: the user's {len(excluded)} training items cover all {num_items} items of the "
            "catalog. Remove this user from training or add items to the catalog."
        )

    # Rejection sampling is cheap while most of the catalog is allowed; otherwise draw from the explicit complement.
    if num_allowed * 2 >= num_items and num_allowed > num_negatives:
        negatives: list[int] = []
        chosen: set[int] = set()
        while len(negatives) < num_negatives:
            for item in rng.integers(0, num_items, size=2 * num_negatives + 4).tolist():
                if item not in excluded and item not in chosen:
                    negatives.append(item)
                    chosen.add(item)
                    if len(negatives) == num_negatives:
                        break
        return negatives

    allowed = np.setdiff1d(np.arange(num_items), np.fromiter(excluded, dtype=np.int64, count=len(excluded)))
    return rng.choice(allowed, size=num_negatives, replace=len(allowed) < num_negatives).tolist()


class EpochSeededRandomSampler(Sampler):
    """Shuffle `range(num_samples)` with a permutation seeded by `(seed, epoch)` and yield `(epoch, index)` keys.

    The key carries the epoch to [`TokenRecTrainingDataset`], so per-epoch sampling stays correct in dataloader
    workers, which hold copies of the dataset. [`TokenRecTrainer`] sets the epoch at the start of every epoch.

    With `length_fn`, the sampler groups examples of similar length as transformers' `LengthGroupedSampler` does: the
    shuffled indices are cut into megabatches of `megabatch_size` and each megabatch is sorted by length, longest
    first. Batches then need little padding.

    Args:
        num_samples: Length of the dataset.
        seed: Seed of the permutations.
        shuffle: Set to `False` to yield the indices in order.
        length_fn: Maps an epoch to the length (in tokens) of every example in that epoch.
        megabatch_size: Examples sorted together when `length_fn` is given, usually 50 batches.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int = 42,
        shuffle: bool = True,
        length_fn: Callable[[int], Sequence[int]] | None = None,
        megabatch_size: int = 1600,
    ) -> None:
        if megabatch_size < 1:
            raise ValueError(f"megabatch_size={megabatch_size} is invalid; use a positive number of examples.")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.length_fn = length_fn
        self.megabatch_size = megabatch_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(example_seed(self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))

        if self.length_fn is not None:
            lengths = self.length_fn(self.epoch)
            if len(lengths) != self.num_samples:
                raise ValueError(f"length_fn returned {len(lengths)} lengths for {self.num_samples} examples.")
            grouped = []
            for start in range(0, len(order), self.megabatch_size):
                megabatch = order[start : start + self.megabatch_size]
                grouped.extend(sorted(megabatch, key=lambda index: -lengths[index]))
            order = grouped

        for index in order:
            yield (self.epoch, index)


class TokenRecTrainingDataset(Dataset):
    """Training examples drawn from the training items of an [`InteractionData`] split.

    Each example is a dict with `user_index`, `history` (the user's other training items, oldest first), `target`
    (one training item) and `seed` (the example's seed, used by [`TokenRecDataCollator`]).

    Args:
        data: The leave-one-out split.
        example_sampling: `"one_per_user"`: one example per user and epoch, whose target is a training item drawn
            again every epoch. `"all_items"`: one example per training interaction and epoch.
        seed: Seed of the per-epoch draws.
        users: User indices to train on. Defaults to `data.seen_users` (unseen users are held out of training).

    Raises:
        ValueError: For an unknown `example_sampling`, a user index outside the split, or no training items at all.
    """

    def __init__(
        self,
        data: InteractionData,
        example_sampling: str = "one_per_user",
        seed: int = 42,
        users: Sequence[int] | None = None,
    ) -> None:
        if example_sampling not in EXAMPLE_SAMPLING_MODES:
            raise ValueError(
                f"example_sampling={example_sampling!r} is not supported; use one of {list(EXAMPLE_SAMPLING_MODES)}."
            )
        users = list(data.seen_users if users is None else users)
        for user in users:
            if not 0 <= user < len(data.train):
                raise ValueError(f"User index {user} is outside the split's {len(data.train)} users.")

        self.train_items = data.train
        self.num_items = data.num_items
        self.example_sampling = example_sampling
        self.seed = seed
        self.epoch = 0

        skipped = [user for user in users if len(data.train[user]) == 0]
        if skipped:
            logger.warning(f"{len(skipped)} users have no training items and are left out of training: {skipped[:5]}")
        self.users = [user for user in users if len(data.train[user]) > 0]
        if not self.users:
            raise ValueError("No user has training items; check the split (each user needs at least 3 interactions).")

        if example_sampling == "all_items":
            lengths = [len(data.train[user]) for user in self.users]
            self._user_of_example = np.repeat(np.arange(len(self.users)), lengths)
            self._offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used for integer keys; `(epoch, index)` keys from the sampler carry their own epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        if self.example_sampling == "all_items":
            return len(self._user_of_example)
        return len(self.users)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if not 0 <= index < len(self):
            raise IndexError(f"Training example {index} is out of range for {len(self)} examples.")
        seed = example_seed(self.seed, epoch, index)

        if self.example_sampling == "all_items":
            position = int(self._user_of_example[index])
            user = self.users[position]
            target_position = index - int(self._offsets[position])
        else:
            user = self.users[index]
            target_position = int(_numpy_rng(seed, _TARGET_STREAM).integers(len(self.train_items[user])))

        items = self.train_items[user]
        history = list(items[:target_position]) + list(items[target_position + 1 :])
        return {"user_index": user, "history": history, "target": int(items[target_position]), "seed": seed}


class TokenRecEvaluationDataset(Dataset):
    """Validation or test rows of an [`InteractionData`] split: `user_index`, `history` and `target`.

    Args:
        data: The leave-one-out split.
        stage: `"valid"` (history = training items, target = validation item) or `"test"` (history = training items
            plus the validation item, target = test item).
        users: User indices to evaluate. Defaults to `data.seen_users`.

    Raises:
        ValueError: For an unknown stage or a user index outside the split.
    """

    def __init__(self, data: InteractionData, stage: str = "valid", users: Sequence[int] | None = None) -> None:
        if stage not in EVALUATION_STAGES:
            raise ValueError(f"stage={stage!r} is not supported; use one of {list(EVALUATION_STAGES)}.")
        users = list(data.seen_users if users is None else users)
        targets = data.valid if stage == "valid" else data.test
        self.stage = stage
        self.rows = []
        for user in users:
            if not 0 <= user < len(targets):
                raise ValueError(f"User index {user} is outside the split's {len(targets)} users.")
            self.rows.append({"user_index": user, "history": list(data.history(user, stage)), "target": targets[user]})

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.rows[index]


@dataclass
class TokenRecDataCollator:
    """Build TokenRec prompts for a batch of examples, pad them dynamically and attach positives and negatives.

    Each example is a dict with `user_index` and `history` (item indices, oldest first), optionally `target` (the
    positive item) and `seed`. For each example the collator draws a template among `template_ids`, keeps the most
    recent history items that fit in the prompt, shuffles them when `shuffle_history` is set, and samples
    `num_negatives` items outside `history + [target]`. A batch is padded to its longest prompt (rounded up to
    `pad_to_multiple_of`), never to `max_length`.

    Args:
        tokenizer: The [`TokenRecTokenizer`] that renders and tokenizes prompts.
        num_negatives: Negatives per example. Set to 0 to return no `negative_item_ids`.
        num_items: Size of the item catalog. Defaults to the number of items known to the tokenizer.
        template_ids: Templates to draw from. Defaults to the tokenizer's seen (training) templates.
        shuffle_history: Shuffle the history items in the prompt.
        max_length: Maximum prompt length in tokens.
        max_history_tokens: Token budget of the history. Defaults to what `max_length` leaves free.
        pad_to_multiple_of: Round the padded length up to this multiple.
        seed: Base seed, used for examples that carry no `seed`, together with the epoch and the user.
        return_tensors: Only `"pt"` is supported.

    Returns (from `__call__`):
        A dict with `input_ids` and `attention_mask` `[B, T]`, plus `positive_item_ids` `[B]` when the examples carry
        a `target`, and `negative_item_ids` `[B, num_negatives]` when `num_negatives > 0` and targets are given.
    """

    tokenizer: TokenRecTokenizer
    num_negatives: int = 1
    num_items: int | None = None
    template_ids: Sequence[int] | None = None
    shuffle_history: bool = True
    max_length: int = 512
    max_history_tokens: int | None = None
    pad_to_multiple_of: int | None = None
    seed: int = 42
    return_tensors: str = "pt"

    def __post_init__(self) -> None:
        if self.num_negatives < 0:
            raise ValueError(f"num_negatives={self.num_negatives} is invalid; use 0 or more.")
        if self.return_tensors != "pt":
            raise ValueError(f"return_tensors={self.return_tensors!r} is not supported; use 'pt'.")
        if self.num_items is None:
            self.num_items = _tokenizer_num_items(self.tokenizer)
        if self.template_ids is None:
            self.template_ids = list(self.tokenizer.seen_template_ids)
        self.template_ids = [int(template) for template in self.template_ids]
        if not self.template_ids:
            raise ValueError("template_ids is empty; give at least one template index.")
        num_templates = len(self.tokenizer.templates)
        for template in self.template_ids:
            if not 0 <= template < num_templates:
                raise ValueError(
                    f"Template index {template} is out of range; the tokenizer has {num_templates} templates."
                )
        self.epoch = 0
        self._budgets: dict[int, int] = {}
        self._fixed_costs: dict[int, int] = {}

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that seeds examples without their own `seed`."""
        self.epoch = int(epoch)

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if len(features) == 0:
            raise ValueError("Cannot collate an empty batch.")
        missing = sorted({"user_index", "history"} - set(features[0]))
        if missing:
            raise ValueError(
                f"Examples must have the columns ['history', 'user_index'] (and 'target' for training); missing "
                f"{missing}, found {sorted(features[0])}. Build them with TokenRecTrainingDataset or "
                "TokenRecEvaluationDataset."
            )
        has_targets = "target" in features[0]

        prompts, positives, negatives = [], [], []
        for feature in features:
            user = int(feature["user_index"])
            history = [int(item) for item in feature["history"]]
            seed = self._seed_of(feature)

            prompts.append(self._render(user, history, seed))
            if has_targets:
                target = int(feature["target"])
                if not 0 <= target < self.num_items:
                    raise ValueError(f"Target item index {target} of user {user} is outside [0, {self.num_items}).")
                positives.append(target)
                if self.num_negatives > 0:
                    rng = _numpy_rng(int(seed), _NEGATIVE_STREAM)
                    negatives.append(sample_negatives(self.num_items, [*history, target], self.num_negatives, rng))

        batch = dict(
            self.tokenizer(
                prompts,
                padding="longest",
                truncation=True,
                max_length=self.max_length,
                pad_to_multiple_of=self.pad_to_multiple_of,
                return_tensors="pt",
            )
        )
        if has_targets:
            batch["positive_item_ids"] = torch.tensor(positives, dtype=torch.long)  # [B]
            if self.num_negatives > 0:
                batch["negative_item_ids"] = torch.tensor(negatives, dtype=torch.long)  # [B, n]
        return batch

    def prompt_length(self, feature: dict[str, Any]) -> int:
        """Return the number of tokens of the prompt that `__call__` builds for `feature`, without tokenizing it.

        The template is drawn exactly as in `__call__`. Every history item costs one token per item codebook, so the
        length is the template's own cost plus the tokens of the kept history items. The length-grouped sampler of
        [`TokenRecTrainer`] uses it to put prompts of similar length in the same batch.
        """
        history = feature["history"]
        rng = self._prompt_rng(self._seed_of(feature))
        template = self._draw_template(bool(history), rng)
        length = self._fixed_cost(template)
        if template in self.tokenizer.history_template_ids:
            item_cost = self.tokenizer.num_item_codebooks
            budget = self._history_budget(template)
            kept = len(history) if budget is None else min(len(history), budget // item_cost)
            length += kept * item_cost
        return min(length, self.max_length)

    def _seed_of(self, feature: dict[str, Any]) -> int:
        seed = feature.get("seed")
        if seed is None:
            seed = example_seed(self.seed, self.epoch, int(feature["user_index"]), int(feature.get("target", -1)) + 1)
        return int(seed)

    @staticmethod
    def _prompt_rng(seed: int) -> random.Random:
        return random.Random(int(_numpy_rng(seed, _PROMPT_STREAM).integers(2**63)))

    def _draw_template(self, has_history: bool, rng: random.Random) -> int:
        template = self.template_ids[rng.randrange(len(self.template_ids))]
        if not has_history and template in self.tokenizer.history_template_ids:
            template = self._user_only_template(rng)
        return template

    def _render(self, user: int, history: list[int], seed: int) -> str:
        rng = self._prompt_rng(seed)
        template = self._draw_template(bool(history), rng)
        budget = self._history_budget(template)
        if budget is not None and len(history) * self.tokenizer.num_item_codebooks <= budget:
            # NOTE: the whole history fits. Passing no budget also avoids a slicing bug in prompts.select_history:
            # for len(history) < max_items < 2 * len(history) it keeps only the last max_items - len(history) items.
            budget = None
        return self.tokenizer.build_prompt(
            user,
            history,
            template=template,
            rng=rng,
            max_history_tokens=budget,
            shuffle=self.shuffle_history,
        )

    def _fixed_cost(self, template: int) -> int:
        """Return the tokens of a prompt of `template` other than its history items (words, user tokens, `</s>`)."""
        if template not in self._fixed_costs:
            uses_history = template in self.tokenizer.history_template_ids
            history = [0] if uses_history else []
            prompt = self.tokenizer.build_prompt(0, history, template=template, rng=0, shuffle=False)
            length = len(self.tokenizer(prompt, padding=False, return_tensors=None)["input_ids"])
            self._fixed_costs[template] = length - (self.tokenizer.num_item_codebooks if uses_history else 0)
        return self._fixed_costs[template]

    def _user_only_template(self, rng: random.Random) -> int:
        """Pick a template without `{history}` for a user whose history is empty."""
        user_only = set(self.tokenizer.user_only_template_ids)
        candidates = [template for template in self.template_ids if template in user_only]
        if not candidates:
            candidates = [template for template in self.tokenizer.seen_template_ids if template in user_only]
            logger.warning_once(
                "A user has an empty history but none of the collator's templates works without one; using a seen "
                "user-only template for such users."
            )
        if not candidates:
            raise ValueError(
                "A user has an empty history and the tokenizer has no seen template without {history}; add a "
                "user-only template or drop users without history."
            )
        return candidates[rng.randrange(len(candidates))]

    def _history_budget(self, template: int) -> int | None:
        """Return the history token budget that keeps a prompt of `template` within `max_length` tokens.

        The template's own cost (its words, the user's ID tokens and `</s>`) is measured once per template by
        tokenizing it with one history item. Every further item costs the same number of tokens.
        """
        if self.max_history_tokens is not None:
            return self.max_history_tokens
        if template not in self.tokenizer.history_template_ids:
            return None
        if template not in self._budgets:
            item_cost = self.tokenizer.num_item_codebooks
            fixed_cost = self._fixed_cost(template)
            budget = (self.max_length - fixed_cost) // item_cost * item_cost
            if budget < item_cost:
                raise ValueError(
                    f"max_length={self.max_length} leaves no room for history items in template {template}, whose "
                    f"text and user tokens take {fixed_cost} tokens; raise max_length."
                )
            self._budgets[template] = budget
        return self._budgets[template]


def _tokenizer_num_items(tokenizer: TokenRecTokenizer) -> int:
    num_items = int(tokenizer.num_items)
    if num_items == 0:
        raise ValueError("The tokenizer has no items; add them with add_items() or pass num_items to the collator.")
    return num_items
