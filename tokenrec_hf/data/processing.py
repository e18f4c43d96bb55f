"""Turn raw per-user sequences into an `InteractionData` split: de-duplication, filters, the cut and leave-one-out."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from transformers.utils import logging

from .configuration_data import MIN_SEQUENCE_LENGTH, PreprocessingConfig
from .interaction_data import InteractionData

logger = logging.get_logger(__name__)


@dataclass
class RawSequences:
    """Per-user item sequences as read from a source, before any filter.

    Attributes:
        source: The file path or description of the source, used in error messages.
        sequences: Raw user id -> raw item ids, oldest first. The dict order is the user order of the source.
        positions: Raw user id -> where the user appears in the source, for example `"line 12"`.
        num_events_below_min_rating: Events dropped by `min_rating` while the source was read.
    """

    source: str
    sequences: dict[str, list[str]]
    positions: dict[str, str] = field(default_factory=dict)
    num_events_below_min_rating: int = 0

    def describe(self, user: str) -> str:
        """Return `"<source>, <position> (user '<id>')"` for error messages."""
        position = self.positions.get(user)
        where = f"{self.source}, {position}" if position else self.source
        return f"{where} (user {user!r})"


def group_events(
    source: str,
    users: Sequence[str],
    items: Sequence[str],
    positions: Sequence[int],
    *,
    timestamps: Sequence[float] | None = None,
    ratings: Sequence[float] | None = None,
    min_rating: float | None = None,
    position_label: str = "line",
) -> RawSequences:
    """Group (user, item) events into per-user sequences, sorted by timestamp when there is one.

    Users keep the order of their first event in the source. Events with equal timestamps keep their source order
    (the sort is stable), and so do all events of a source without timestamps.

    Args:
        source: The file path or description of the source.
        users, items: Raw ids of each event, as strings.
        positions: Line or row number of each event, 1-based.
        timestamps: Optional event times; any numbers that sort in time order.
        ratings: Optional event ratings, needed by `min_rating`.
        min_rating: Drop events rated below this value.
        position_label: `"line"` for text files, `"row"` for tables.

    Raises:
        ValueError: `min_rating` is set but the source has no ratings.
    """
    if min_rating is not None and ratings is None:
        raise ValueError(
            f"min_rating={min_rating} was set, but {source} has no rating column. "
            "Remove min_rating, or name the rating column."
        )

    grouped: dict[str, list[int]] = {}
    first_position: dict[str, str] = {}
    num_below = 0
    for event, user in enumerate(users):
        if min_rating is not None and ratings[event] < min_rating:
            num_below += 1
            continue
        events = grouped.get(user)
        if events is None:
            events = grouped[user] = []
            first_position[user] = f"{position_label} {positions[event]}"
        events.append(event)

    if num_below:
        logger.info(f"{source}: dropped {num_below:,} events rated below min_rating={min_rating}.")

    sequences = {}
    for user, events in grouped.items():
        if timestamps is not None:
            events.sort(key=timestamps.__getitem__)
        sequences[user] = [items[event] for event in events]
    return RawSequences(source, sequences, first_position, num_events_below_min_rating=num_below)


def _deduplicate(raw: RawSequences, config: PreprocessingConfig) -> tuple[dict[str, list[str]], int]:
    sequences = {}
    num_duplicates = 0
    for user, items in raw.sequences.items():
        unique = list(dict.fromkeys(items))
        if len(unique) != len(items):
            if config.duplicates == "raise":
                repeated = next(item for item, count in Counter(items).items() if count > 1)
                raise ValueError(
                    f"{raw.describe(user)}: item {repeated!r} appears more than once in the user's sequence. "
                    "Remove the repeated interaction, or pass duplicates='keep_first' to keep only the first one."
                )
            num_duplicates += len(items) - len(unique)
        sequences[user] = unique
    if num_duplicates:
        logger.warning(
            f"{raw.source}: removed {num_duplicates:,} duplicate (user, item) interactions (kept the first)."
        )
    return sequences, num_duplicates


def _drop_rare_items(sequences: dict[str, list[str]], minimum: int) -> int:
    counts = Counter(item for items in sequences.values() for item in items)
    rare = {item for item, count in counts.items() if count < minimum}
    if rare:
        for user, items in sequences.items():
            sequences[user] = [item for item in items if item not in rare]
    return len(rare)


def _drop_inactive_users(sequences: dict[str, list[str]], minimum: int) -> int:
    inactive = [user for user, items in sequences.items() if len(items) < minimum]
    for user in inactive:
        del sequences[user]
    return len(inactive)


def _apply_count_filters(sequences: dict[str, list[str]], config: PreprocessingConfig, source: str) -> dict[str, int]:
    removed = {"items_removed_by_filters": 0, "users_removed_by_filters": 0}
    if config.min_item_interactions is not None:
        removed["items_removed_by_filters"] += _drop_rare_items(sequences, config.min_item_interactions)
    if config.min_user_interactions is not None:
        removed["users_removed_by_filters"] += _drop_inactive_users(sequences, config.min_user_interactions)
    if config.k_core is not None:
        while True:
            items_dropped = _drop_rare_items(sequences, config.k_core)
            users_dropped = _drop_inactive_users(sequences, config.k_core)
            removed["items_removed_by_filters"] += items_dropped
            removed["users_removed_by_filters"] += users_dropped
            if not items_dropped and not users_dropped:
                break
    if any(removed.values()):
        logger.info(
            f"{source}: filters removed {removed['items_removed_by_filters']:,} items and "
            f"{removed['users_removed_by_filters']:,} users."
        )
    return removed


def _handle_short_users(sequences: dict[str, list[str]], raw: RawSequences, config: PreprocessingConfig) -> int:
    short = [user for user, items in sequences.items() if len(items) < MIN_SEQUENCE_LENGTH]
    if short and config.short_users == "raise":
        user = short[0]
        raise ValueError(
            f"{raw.describe(user)} has {len(sequences[user])} interaction(s) after de-duplication and filters, "
            f"but leave-one-out needs at least {MIN_SEQUENCE_LENGTH} (training items, a validation target and a "
            f"test target); {len(short):,} user(s) are that short. Add interactions for them, remove them, or "
            "pass short_users='drop' to drop them."
        )
    for user in short:
        del sequences[user]
    if short:
        logger.warning(
            f"{raw.source}: dropped {len(short):,} users with fewer than {MIN_SEQUENCE_LENGTH} interactions "
            "(leave-one-out needs a training item and two targets)."
        )
    return len(short)


def _item_order(sequences: list[list[str]]) -> list[str]:
    # Items are numbered by first appearance in the training parts (all but the last two items of each
    # sequence), then in the held-out parts. This is the remap rule of the TokenRec reference code, so its
    # item_list.txt (and embedding rows) line up with these indices on the same sequences.
    order: dict[str, None] = {}
    for items in sequences:
        order.update(dict.fromkeys(items[:-2]))
    for items in sequences:
        order.update(dict.fromkeys(items[-2:]))
    return list(order)


def _select_unseen_users(lengths: list[int], fraction: float) -> list[int]:
    if fraction <= 0.0:
        return []
    count = max(1, math.floor(fraction * len(lengths)))
    if count >= len(lengths):
        raise ValueError(
            f"unseen_user_fraction={fraction} would hold out all {len(lengths)} users; pass a smaller fraction."
        )
    by_activity = sorted(range(len(lengths)), key=lambda user: (lengths[user], user))
    return sorted(by_activity[:count])


def _active_filters(config: PreprocessingConfig) -> str:
    """Describe the filters that differ from "no filter", for error messages; empty when none is set."""
    active = {
        name: value
        for name, value in config.to_dict().items()
        if name in {"min_rating", "k_core", "min_user_interactions", "min_item_interactions"} and value is not None
    }
    return f" ({', '.join(f'{name}={value}' for name, value in active.items())})" if active else ""


def build_interaction_data(raw: RawSequences, config: PreprocessingConfig, name: str) -> InteractionData:
    """Apply de-duplication, filters, the most-recent cut and the leave-one-out split to raw sequences.

    Args:
        raw: Sequences from a reader, oldest item first.
        config: The preprocessing settings.
        name: The dataset name stored in the result.

    Returns:
        The split, with `stats` recording what each step removed.

    Raises:
        ValueError: The source has no interactions, a duplicate or a short user meets a `"raise"` policy, or
            nothing is left after the filters.
    """
    if not raw.sequences:
        raise ValueError(f"{raw.source} contains no interactions. Check that the file is the right one and not empty.")
    num_raw_users = len(raw.sequences)
    num_raw_interactions = sum(len(items) for items in raw.sequences.values())

    sequences, num_duplicates = _deduplicate(raw, config)
    removed = _apply_count_filters(sequences, config, raw.source)
    num_short = _handle_short_users(sequences, raw, config)
    if not sequences:
        raise ValueError(
            f"No user of {raw.source} has {MIN_SEQUENCE_LENGTH} or more interactions after de-duplication and "
            f"filters{_active_filters(config)}. Leave-one-out needs {MIN_SEQUENCE_LENGTH} distinct items per user, "
            "so check the file's layout, or relax the filters."
        )

    user_ids = list(sequences)
    full_sequences = [sequences[user] for user in user_ids]
    item_ids = _item_order(full_sequences)
    item_index = {item: index for index, item in enumerate(item_ids)}
    lengths = [len(items) for items in full_sequences]

    limit = config.max_sequence_length
    num_cut = 0
    train, valid, test = [], [], []
    for items in full_sequences:
        if limit is not None and len(items) > limit:
            items = items[-limit:]
            num_cut += 1
        indices = [item_index[item] for item in items]
        train.append(indices[:-2])
        valid.append(indices[-2])
        test.append(indices[-1])
    if num_cut:
        logger.info(f"{raw.source}: cut {num_cut:,} sequences to their most recent {limit} items.")

    unseen_users = _select_unseen_users(lengths, config.unseen_user_fraction)
    stats = {
        "raw_users": num_raw_users,
        "raw_interactions": num_raw_interactions,
        "events_below_min_rating": raw.num_events_below_min_rating,
        "duplicates_removed": num_duplicates,
        **removed,
        "short_users_dropped": num_short,
        "interactions_before_cut": sum(lengths),
        "sequences_cut": num_cut,
    }
    return InteractionData(
        name=name,
        user_ids=user_ids,
        item_ids=item_ids,
        train=train,
        valid=valid,
        test=test,
        unseen_users=unseen_users,
        config=config.to_dict(),
        stats=stats,
        source=raw.source,
    )
