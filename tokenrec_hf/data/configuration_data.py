"""Preprocessing settings shared by every interaction-data loader: filters, the sequence cut and the unseen-user split."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

# Leave-one-out needs one training item, one validation target and one test target per user.
MIN_SEQUENCE_LENGTH = 3


@dataclass
class PreprocessingConfig:
    """Settings that turn raw interactions into the leave-one-out split.

    Every loader in `tokenrec_hf.data` accepts these fields as keyword arguments. The steps run in this order:

    1. the minimum rating (event formats only) and de-duplication;
    2. the per-item minimum, the per-user minimum and the iterative k-core;
    3. the removal of users with fewer than 3 interactions;
    4. the cut to the most recent items, the leave-one-out split and the unseen-user selection.
    """

    max_sequence_length: int | None = field(
        default=100,
        metadata={
            "help": "Keep only each user's most recent `max_sequence_length` interactions (the TokenRec paper uses "
            "100). `None` keeps whole sequences."
        },
    )
    unseen_user_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Share of users, in [0, 1), held out of every training stage: the least active users, by "
            "interaction count before the sequence cut, ties broken by the lower user index."
        },
    )
    min_rating: float | None = field(
        default=None,
        metadata={"help": "Drop events rated below this value. Only for formats with ratings."},
    )
    k_core: int | None = field(
        default=None,
        metadata={
            "help": "Iteratively drop users and items with fewer than `k_core` interactions until none is left."
        },
    )
    min_user_interactions: int | None = field(
        default=None, metadata={"help": "Drop users with fewer interactions than this (one pass)."}
    )
    min_item_interactions: int | None = field(
        default=None, metadata={"help": "Drop items with fewer interactions than this (one pass, before users)."}
    )
    duplicates: Literal["keep_first", "raise"] = field(
        default="keep_first",
        metadata={
            "help": "What to do with a repeated (user, item) pair: keep its first occurrence and log the count, "
            "or raise an error naming the pair."
        },
    )
    short_users: Literal["drop", "raise"] = field(
        default="drop",
        metadata={
            "help": "What to do with a user left with fewer than 3 interactions: drop the user and log the count, "
            "or raise an error naming the user."
        },
    )

    def __post_init__(self) -> None:
        if self.max_sequence_length is not None and (
            not isinstance(self.max_sequence_length, int) or self.max_sequence_length < MIN_SEQUENCE_LENGTH
        ):
            raise ValueError(
                f"max_sequence_length={self.max_sequence_length!r} is invalid: pass an integer >= "
                f"{MIN_SEQUENCE_LENGTH} (leave-one-out needs a training item and two targets), or None (Python) for no cut."
            )
        if not isinstance(self.unseen_user_fraction, (int, float)) or not 0.0 <= self.unseen_user_fraction < 1.0:
            raise ValueError(
                f"unseen_user_fraction={self.unseen_user_fraction!r} is invalid: pass a number in [0, 1), "
                "for example 0.05 to hold out the 5% least active users."
            )
        for name in ("k_core", "min_user_interactions", "min_item_interactions"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name}={value!r} is invalid: pass a positive integer, or None to disable it.")
        if self.min_rating is not None and not isinstance(self.min_rating, (int, float)):
            raise ValueError(f"min_rating={self.min_rating!r} is invalid: pass a number, or None to keep all events.")
        if self.duplicates not in ("keep_first", "raise"):
            raise ValueError(f"duplicates={self.duplicates!r} is invalid: pass 'keep_first' or 'raise'.")
        if self.short_users not in ("drop", "raise"):
            raise ValueError(f"short_users={self.short_users!r} is invalid: pass 'drop' or 'raise'.")

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> PreprocessingConfig:
        """Build a config from loader keyword arguments, rejecting unknown names.

        Raises:
            TypeError: A keyword is not a field of `PreprocessingConfig`.
        """
        known = {item.name for item in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"Unknown preprocessing option(s) {unknown}. Accepted options: {sorted(known)}.")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """Return the settings as a JSON-serializable dictionary."""
        return asdict(self)
