"""The leave-one-out split of user sequences that every TokenRec stage reads, with JSON save/load and `datasets` export."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from transformers.utils import logging

from ..utils import atomic_directory, atomic_write_json, check_artifact_version, load_json, package_version_stamp

if TYPE_CHECKING:
    import torch

logger = logging.get_logger(__name__)

INTERACTION_DATA_FILE = "interaction_data.json"
_FORMAT_VERSION = 1


class InteractionData:
    """Leave-one-out split of user sequences. Indices are 0-based internal ids.

    For each user, the last item of the (cut) sequence is the test target, the second to last the validation
    target, and the rest is training data, oldest first. Users in `unseen_users` are held out of every training
    stage. They still have a training history, which is what a new user would bring at inference time.

    Args:
        name: Dataset name, for example `"lastfm"`.
        user_ids: Internal user index -> raw user id (string).
        item_ids: Internal item index -> raw item id (string).
        train: Per user, training item indices, oldest first.
        valid: Per user, the validation target item index.
        test: Per user, the test target item index.
        unseen_users: Sorted user indices held out of every training stage.
        config: The `PreprocessingConfig` settings that built the split, as a dictionary.
        stats: Counts recorded while building the split (duplicates removed, users dropped, ...).
        source: The file or object the interactions came from.

    Raises:
        ValueError: The lists have different lengths, or an index is out of range.
    """

    def __init__(
        self,
        name: str,
        user_ids: list[str],
        item_ids: list[str],
        train: list[list[int]],
        valid: list[int],
        test: list[int],
        unseen_users: list[int] | None = None,
        config: dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
        source: str | None = None,
    ) -> None:
        self.name = name
        self.user_ids = [str(user) for user in user_ids]
        self.item_ids = [str(item) for item in item_ids]
        self.train = train
        self.valid = valid
        self.test = test
        self.unseen_users = sorted(unseen_users or [])
        self.config = dict(config or {})
        self.stats = dict(stats or {})
        self.source = source
        self._validate()
        self._user_lookup: dict[str, int] | None = None
        self._item_lookup: dict[str, int] | None = None

    def _validate(self) -> None:
        num_users = len(self.user_ids)
        for what, values in (("train", self.train), ("valid", self.valid), ("test", self.test)):
            if len(values) != num_users:
                raise ValueError(
                    f"InteractionData {self.name!r}: `{what}` has {len(values)} entries but there are {num_users} "
                    "users; every user needs training items, a validation target and a test target."
                )
        if len(set(self.user_ids)) != num_users:
            raise ValueError(f"InteractionData {self.name!r}: user_ids contains repeated ids.")
        if len(set(self.item_ids)) != len(self.item_ids):
            raise ValueError(f"InteractionData {self.name!r}: item_ids contains repeated ids.")

        num_items = len(self.item_ids)
        targets = [*self.valid, *self.test]
        all_items = [item for items in self.train for item in items]
        for item in (min(all_items + targets, default=0), max(all_items + targets, default=0)):
            if not 0 <= item < num_items:
                raise ValueError(
                    f"InteractionData {self.name!r}: item index {item} is outside [0, {num_items}); the split does "
                    "not match item_ids."
                )
        for user in self.unseen_users:
            if not 0 <= user < num_users:
                raise ValueError(
                    f"InteractionData {self.name!r}: unseen user index {user} is outside [0, {num_users})."
                )

    # ----- sizes and lookups -----

    @property
    def num_users(self) -> int:
        """Number of users (seen and unseen)."""
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        """Number of items in the catalog, including items that only occur as validation or test targets."""
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        """Number of interactions in the split (training items plus both targets), after the sequence cut."""
        return sum(len(items) for items in self.train) + 2 * self.num_users

    @property
    def seen_users(self) -> list[int]:
        """User indices that take part in training (all users not in `unseen_users`)."""
        unseen = set(self.unseen_users)
        return [user for user in range(self.num_users) if user not in unseen]

    def user_index(self, raw_id: str | int) -> int:
        """Return the internal index of the raw user id `raw_id`.

        Raises:
            ValueError: The id is not a user of this dataset.
        """
        if self._user_lookup is None:
            self._user_lookup = {user: index for index, user in enumerate(self.user_ids)}
        return self._lookup(self._user_lookup, raw_id, "user", self.user_ids)

    def item_index(self, raw_id: str | int) -> int:
        """Return the internal index of the raw item id `raw_id`.

        Raises:
            ValueError: The id is not an item of this dataset.
        """
        if self._item_lookup is None:
            self._item_lookup = {item: index for index, item in enumerate(self.item_ids)}
        return self._lookup(self._item_lookup, raw_id, "item", self.item_ids)

    def _lookup(self, table: dict[str, int], raw_id: str | int, kind: str, ids: list[str]) -> int:
        index = table.get(str(raw_id))
        if index is None:
            examples = ", ".join(repr(value) for value in ids[:3])
            raise ValueError(
                f"Unknown {kind} id {raw_id!r} for dataset {self.name!r} ({len(ids):,} {kind}s, for example "
                f"{examples}). Raw ids are compared as strings; check the id, or pass the internal index instead."
            )
        return index

    def _check_user(self, user: int) -> None:
        if not isinstance(user, int) or not 0 <= user < self.num_users:
            raise ValueError(
                f"User index {user!r} is outside [0, {self.num_users}) for dataset {self.name!r}. "
                "Convert raw ids with `user_index(raw_id)`."
            )

    # ----- split access -----

    def history(self, user: int, stage: Literal["valid", "test"] = "valid") -> list[int]:
        """Return the items a user has seen before the target of `stage`, oldest first.

        Args:
            user: Internal user index.
            stage: `"valid"` returns the training items. `"test"` returns the training items plus the validation
                target.

        Raises:
            ValueError: The user index is out of range or `stage` is unknown.
        """
        self._check_user(user)
        if stage == "valid":
            return list(self.train[user])
        if stage == "test":
            return [*self.train[user], self.valid[user]]
        raise ValueError(f"stage={stage!r} is invalid: pass 'valid' or 'test'.")

    def targets(self, stage: Literal["valid", "test"] = "valid") -> list[int]:
        """Return the target item of every user for `stage`.

        Raises:
            ValueError: `stage` is unknown.
        """
        if stage == "valid":
            return list(self.valid)
        if stage == "test":
            return list(self.test)
        raise ValueError(f"stage={stage!r} is invalid: pass 'valid' or 'test'.")

    def train_pairs(self, include_unseen: bool = False) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Return the training interactions as two aligned tensors, for collaborative filtering.

        Args:
            include_unseen: Also return the training items of the unseen users. Leave it `False` for every
                training stage, because those users must stay out of training.

        Returns:
            `(users, items)`, both `LongTensor[num_pairs]`.
        """
        import torch

        users = range(self.num_users) if include_unseen else self.seen_users
        user_column = [user for user in users for _ in self.train[user]]
        item_column = [item for user in users for item in self.train[user]]
        return torch.tensor(user_column, dtype=torch.long), torch.tensor(item_column, dtype=torch.long)

    # ----- export -----

    def to_hf_datasets(
        self,
        train_format: Literal["per_user", "per_interaction"] = "per_user",
        include_unseen_in_train: bool = False,
    ):
        """Export the split as a `datasets.DatasetDict` with `"train"`, `"validation"` and `"test"`.

        Validation and test rows have `user_index`, `user_id`, `history` (item indices, oldest first), `target`
        and `is_unseen`, one row per user. Their history follows `history(user, stage)`.

        Args:
            train_format: `"per_user"` gives one training row per user with `user_index`, `user_id` and `history`
                (all training items). `"per_interaction"` gives one row per training interaction with `target`
                set to the item and `history` set to the user's other training items.
            include_unseen_in_train: Also put the unseen users in the training split.

        Returns:
            A `datasets.DatasetDict`.

        Raises:
            ValueError: `train_format` is unknown.
        """
        from datasets import Dataset, DatasetDict, Features, List, Value

        users = range(self.num_users) if include_unseen_in_train else self.seen_users
        if train_format == "per_user":
            train_features = Features(
                {"user_index": Value("int64"), "user_id": Value("string"), "history": List(Value("int64"))}
            )
            train_rows = {
                "user_index": list(users),
                "user_id": [self.user_ids[user] for user in users],
                "history": [self.train[user] for user in users],
            }
        elif train_format == "per_interaction":
            train_features = Features(
                {
                    "user_index": Value("int64"),
                    "user_id": Value("string"),
                    "history": List(Value("int64")),
                    "target": Value("int64"),
                }
            )
            train_rows = {"user_index": [], "user_id": [], "history": [], "target": []}
            for user in users:
                items = self.train[user]
                for position, item in enumerate(items):
                    train_rows["user_index"].append(user)
                    train_rows["user_id"].append(self.user_ids[user])
                    train_rows["history"].append(items[:position] + items[position + 1 :])
                    train_rows["target"].append(item)
        else:
            raise ValueError(f"train_format={train_format!r} is invalid: pass 'per_user' or 'per_interaction'.")

        eval_features = Features(
            {
                "user_index": Value("int64"),
                "user_id": Value("string"),
                "history": List(Value("int64")),
                "target": Value("int64"),
                "is_unseen": Value("bool"),
            }
        )
        unseen = set(self.unseen_users)
        splits = {"train": Dataset.from_dict(train_rows, features=train_features)}
        for split, stage in (("validation", "valid"), ("test", "test")):
            rows = {
                "user_index": list(range(self.num_users)),
                "user_id": list(self.user_ids),
                "history": [self.history(user, stage) for user in range(self.num_users)],
                "target": self.targets(stage),
                "is_unseen": [user in unseen for user in range(self.num_users)],
            }
            splits[split] = Dataset.from_dict(rows, features=eval_features)
        return DatasetDict(splits)

    # ----- statistics -----

    def split_stats(self) -> dict[str, int | float]:
        """Return the split's counts: users, items, interactions per stage and what preprocessing removed."""
        train_lengths = [len(items) for items in self.train]
        seen = self.seen_users
        items_in_training = {item for user in seen for item in self.train[user]}
        return {
            "users": self.num_users,
            "seen_users": len(seen),
            "unseen_users": len(self.unseen_users),
            "items": self.num_items,
            "interactions": self.num_interactions,
            "train_interactions": sum(train_lengths),
            "train_interactions_seen_users": sum(train_lengths[user] for user in seen),
            "items_without_training_interactions": self.num_items - len(items_in_training),
            "mean_train_length": round(sum(train_lengths) / max(1, self.num_users), 2),
            "max_train_length": max(train_lengths, default=0),
            "density": round(self.num_interactions / max(1, self.num_users * self.num_items), 6),
            **self.stats,
        }

    def format_split_stats(self) -> str:
        """Return `split_stats()` as a two-column Markdown table."""
        stats = self.split_stats()
        width = max(len(key) for key in stats)
        lines = [f"| {'statistic'.ljust(width)} | value |", f"| {'-' * width} | ---: |"]
        for key, value in stats.items():
            text = f"{value:,}" if isinstance(value, int) else f"{value}"
            lines.append(f"| {key.ljust(width)} | {text} |")
        return f"Split of {self.name}:\n" + "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"InteractionData(name={self.name!r}, users={self.num_users:,}, items={self.num_items:,}, "
            f"interactions={self.num_interactions:,}, unseen_users={len(self.unseen_users):,})"
        )

    # ----- serialization -----

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Save the id maps and the split as `interaction_data.json` in `save_directory`, atomically.

        The folder is replaced as a whole, so an interrupted save leaves the previous version in place.
        """
        payload = {
            **package_version_stamp(),
            "format_version": _FORMAT_VERSION,
            "name": self.name,
            "source": self.source,
            "config": self.config,
            "stats": self.stats,
            "user_ids": self.user_ids,
            "item_ids": self.item_ids,
            "train": self.train,
            "valid": self.valid,
            "test": self.test,
            "unseen_users": self.unseen_users,
        }
        with atomic_directory(save_directory) as staging:
            atomic_write_json(Path(staging) / INTERACTION_DATA_FILE, payload, indent=None)

    @classmethod
    def from_pretrained(cls, pretrained_path: str | os.PathLike, **hub_kwargs: Any) -> InteractionData:
        """Load a split saved by `save_pretrained` from a local folder or a Hub repository id.

        Args:
            pretrained_path: The folder, or a Hub repository id whose snapshot contains `interaction_data.json`.
            hub_kwargs: `revision`, `cache_dir`, `token` or `local_files_only` for a Hub id.

        Raises:
            FileNotFoundError: The folder has no `interaction_data.json`.
            ValueError: The file is malformed, lacks a field, or its split does not match its id maps.
        """
        from ..utils import resolve_pretrained_folder

        folder = resolve_pretrained_folder(
            pretrained_path, [INTERACTION_DATA_FILE], artifact="interaction data", **hub_kwargs
        )
        path = folder / INTERACTION_DATA_FILE
        payload = load_json(path, what="interaction data file")
        check_artifact_version(payload.get("tokenrec_hf_version"), f"Interaction data {path}")
        required = ["name", "user_ids", "item_ids", "train", "valid", "test"]
        missing = sorted(key for key in required if key not in payload)
        if missing:
            raise ValueError(
                f"{path} lacks the field(s) {missing}; found {sorted(payload)}. "
                "Save the split again with `InteractionData.save_pretrained`."
            )
        try:
            return cls(
                name=payload["name"],
                user_ids=payload["user_ids"],
                item_ids=payload["item_ids"],
                train=payload["train"],
                valid=payload["valid"],
                test=payload["test"],
                unseen_users=payload.get("unseen_users", []),
                config=payload.get("config"),
                stats=payload.get("stats"),
                source=payload.get("source"),
            )
        except ValueError as error:
            raise ValueError(f"{path} is inconsistent: {error}") from error
