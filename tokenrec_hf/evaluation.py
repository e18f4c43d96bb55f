"""Full-ranking evaluation: top-K retrieval and HR@K / NDCG@K over the whole item catalog.

Every user is scored against every item. Items in the user's history score minus infinity before ranking, so they can
never outrank an unseen item, whatever the sign of the similarity. Each user has one relevant item (the leave-one-out
target), so the ideal DCG is 1 and NDCG@K is `1 / log2(rank + 2)` when the 0-based `rank` of the target is below K.

Items are scored in chunks of `chunk_size` columns and users in batches of `batch_size` rows, so peak memory is about
`batch_size * chunk_size` floats whatever the catalog size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "SIMILARITIES",
    "evaluate_full_ranking",
    "full_ranking_top_k",
    "metrics_from_ranks",
    "target_ranks",
]

SIMILARITIES = ("dot", "cosine")


def _check_tables(queries: torch.Tensor, item_table: torch.Tensor, similarity: str) -> None:
    if similarity not in SIMILARITIES:
        raise ValueError(f"similarity={similarity!r} is not supported; use one of {list(SIMILARITIES)}.")
    if queries.dim() != 2 or item_table.dim() != 2:
        raise ValueError(
            f"queries and item_table must be 2-D [n, dim]; got shapes {tuple(queries.shape)} and "
            f"{tuple(item_table.shape)}."
        )
    if queries.shape[1] != item_table.shape[1]:
        raise ValueError(
            f"queries have dimension {queries.shape[1]} but item_table has dimension {item_table.shape[1]}; "
            "both must come from the same embedding space (check the model that produced each table)."
        )
    if item_table.shape[0] == 0:
        raise ValueError("item_table has no rows; there is nothing to rank.")
    for name, table in (("queries", queries), ("item_table", item_table)):
        if not torch.isfinite(table).all():
            bad_row = int((~torch.isfinite(table)).any(dim=1).nonzero()[0])
            raise ValueError(f"{name} row {bad_row} contains NaN or infinite values; fix the embeddings first.")


def _prepare(table: torch.Tensor, similarity: str) -> torch.Tensor:
    table = table.detach().float()
    if similarity == "cosine":
        table = torch.nn.functional.normalize(table, dim=-1, eps=1e-12)
    return table


def _exclusion_pairs(
    exclude: Sequence[Sequence[int]], start: int, num_items: int, targets: Sequence[int] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten per-row item lists into (row, item) index tensors; the row index is relative to the batch."""
    lengths = [len(items) for items in exclude]
    columns = torch.tensor([item for items in exclude for item in items], dtype=torch.long)
    rows = torch.repeat_interleave(torch.arange(len(exclude)), torch.tensor(lengths, dtype=torch.long))
    if columns.numel() and (columns.min() < 0 or columns.max() >= num_items):
        position = int(((columns < 0) | (columns >= num_items)).nonzero()[0])
        raise ValueError(
            f"History of row {start + int(rows[position])} contains item index {int(columns[position])}, outside "
            f"[0, {num_items}); histories must use the same 0-based item indices as item_table."
        )
    if targets is not None and columns.numel():
        target_tensor = torch.as_tensor(list(targets), dtype=torch.long)
        keep = columns != target_tensor[rows]
        if not bool(keep.all()):
            logger.warning_once(
                "Some evaluation targets also occur in their user's history; those targets are not masked, so "
                "repeated items can still be found."
            )
        rows, columns = rows[keep], columns[keep]
    return rows, columns


def _chunk_scores(
    queries: torch.Tensor,
    items: torch.Tensor,
    item_start: int,
    rows: torch.Tensor,
    columns: torch.Tensor,
) -> torch.Tensor:
    """Score one item chunk and set the excluded (row, item) pairs that fall inside it to minus infinity."""
    scores = queries @ items.T  # [B, chunk]
    if columns.numel():
        inside = (columns >= item_start) & (columns < item_start + items.shape[0])
        scores[rows[inside], columns[inside] - item_start] = float("-inf")
    return scores


def full_ranking_top_k(
    queries: torch.Tensor,
    item_table: torch.Tensor,
    k: int,
    exclude: Sequence[Sequence[int]] | None = None,
    *,
    similarity: str = "dot",
    chunk_size: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the `k` best items per query over the whole catalog, with excluded items scored minus infinity.

    Items are scored `chunk_size` at a time; each chunk's top-k is merged into a running top-k, so memory stays at
    about `len(queries) * (chunk_size + 2 * k)` floats.

    Args:
        queries: `[B, d]` query (user) embeddings.
        item_table: `[I, d]` item embeddings.
        k: How many items to return per query. Values above `I` are clipped to `I`.
        exclude: For each query, the item indices to score minus infinity (usually the user's history).
        similarity: `"dot"` (inner product) or `"cosine"`.
        chunk_size: Number of items scored at once.

    Returns:
        `(scores, indices)`, both `[B, min(k, I)]`, best first. Excluded items appear only when fewer than `k` items
        remain, with score minus infinity.

    Raises:
        ValueError: For mismatched dimensions, non-finite embeddings, an unknown similarity, `k < 1`, or an excluded
            item index outside the catalog.
    """
    _check_tables(queries, item_table, similarity)
    if k < 1:
        raise ValueError(f"k={k} must be at least 1.")
    if chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size} must be at least 1.")
    if exclude is not None and len(exclude) != queries.shape[0]:
        raise ValueError(f"exclude has {len(exclude)} lists but there are {queries.shape[0]} queries; pass one each.")

    num_items = item_table.shape[0]
    k = min(k, num_items)
    queries = _prepare(queries, similarity)
    if exclude is not None:
        rows, columns = _exclusion_pairs(exclude, 0, num_items)
    else:
        rows = columns = torch.empty(0, dtype=torch.long)

    best_scores = torch.empty(queries.shape[0], 0)
    best_indices = torch.empty(queries.shape[0], 0, dtype=torch.long)
    for item_start in range(0, num_items, chunk_size):
        items = _prepare(item_table[item_start : item_start + chunk_size], similarity)
        scores = _chunk_scores(queries, items, item_start, rows, columns)
        chunk_scores, chunk_indices = scores.topk(min(k, scores.shape[1]), dim=1)

        # Merge the chunk's candidates with the running best ones and keep the top k.
        merged_scores = torch.cat([best_scores, chunk_scores], dim=1)
        merged_indices = torch.cat([best_indices, chunk_indices + item_start], dim=1)
        best_scores, order = merged_scores.topk(min(k, merged_scores.shape[1]), dim=1)
        best_indices = merged_indices.gather(1, order)
    return best_scores, best_indices


def target_ranks(
    queries: torch.Tensor,
    item_table: torch.Tensor,
    histories: Sequence[Sequence[int]],
    targets: Sequence[int],
    *,
    similarity: str = "dot",
    chunk_size: int = 65536,
) -> torch.Tensor:
    """Return each target's 0-based rank among all items, with history items scored minus infinity.

    The rank counts the items that score strictly higher than the target, plus the tied items with a smaller index,
    which is the order a stable descending sort gives. A target that also occurs in its own history is not masked.
    Target scores are read from the same score matrix as the other items, so rounding cannot break ties differently.
    When the catalog spans several chunks the chunks are scored twice: once to read the target scores, then to count.

    Args:
        queries: `[B, d]` query (user) embeddings.
        item_table: `[I, d]` item embeddings.
        histories: For each query, the item indices to score minus infinity.
        targets: For each query, the index of the relevant item.
        similarity: `"dot"` or `"cosine"`.
        chunk_size: Number of items scored at once.

    Returns:
        `LongTensor[B]` of ranks in `[0, I)`.

    Raises:
        ValueError: For mismatched lengths or dimensions, or item indices outside the catalog.
    """
    _check_tables(queries, item_table, similarity)
    num_queries, num_items = queries.shape[0], item_table.shape[0]
    if len(histories) != num_queries or len(targets) != num_queries:
        raise ValueError(
            f"Got {num_queries} queries, {len(histories)} histories and {len(targets)} targets; pass one of each per "
            "user."
        )
    target_tensor = torch.as_tensor(list(targets), dtype=torch.long)
    if target_tensor.numel() and (target_tensor.min() < 0 or target_tensor.max() >= num_items):
        position = int(((target_tensor < 0) | (target_tensor >= num_items)).nonzero()[0])
        raise ValueError(
            f"Target of row {position} is item index {int(target_tensor[position])}, outside [0, {num_items})."
        )

    queries = _prepare(queries, similarity)
    rows, columns = _exclusion_pairs(histories, 0, num_items, targets)
    starts = list(range(0, num_items, chunk_size))

    # Pass 1: read each target's score from the chunk that contains it.
    target_scores = torch.empty(num_queries)
    single_chunk_scores = None
    for item_start in starts:
        items = _prepare(item_table[item_start : item_start + chunk_size], similarity)
        inside = (target_tensor >= item_start) & (target_tensor < item_start + items.shape[0])
        if not bool(inside.any()):
            continue
        scores = _chunk_scores(queries, items, item_start, rows, columns)
        target_scores[inside] = scores[inside.nonzero().squeeze(1), target_tensor[inside] - item_start]
        if len(starts) == 1:
            single_chunk_scores = scores

    # Pass 2: count the items ranked above each target.
    ranks = torch.zeros(num_queries, dtype=torch.long)
    for item_start in starts:
        if single_chunk_scores is not None:
            scores = single_chunk_scores
        else:
            items = _prepare(item_table[item_start : item_start + chunk_size], similarity)
            scores = _chunk_scores(queries, items, item_start, rows, columns)
        item_index = torch.arange(item_start, item_start + scores.shape[1])
        higher = scores > target_scores[:, None]
        tied_before = (scores == target_scores[:, None]) & (item_index[None, :] < target_tensor[:, None])
        ranks += (higher | tied_before).sum(dim=1)
    return ranks


def metrics_from_ranks(ranks: torch.Tensor, ks: Sequence[int] = (10, 20, 30)) -> dict[str, float]:
    """Compute HR@K and NDCG@K (one relevant item, so IDCG = 1) from 0-based target ranks.

    Args:
        ranks: `LongTensor[N]` of 0-based ranks of each user's target.
        ks: Cut-offs.

    Returns:
        `{"hr@10": ..., "ndcg@10": ..., ...}`, fractions in [0, 1] averaged over users, ordered by K with HR first.
    """
    if ranks.numel() == 0:
        raise ValueError("No users to evaluate: ranks is empty.")
    ranks = ranks.double()
    gains = 1.0 / torch.log2(ranks + 2.0)
    metrics = {}
    for k in ks:
        hit = ranks < k
        metrics[f"hr@{k}"] = float(hit.double().mean())
        metrics[f"ndcg@{k}"] = float(torch.where(hit, gains, torch.zeros_like(gains)).mean())
    return {key: metrics[key] for key in [f"hr@{k}" for k in ks] + [f"ndcg@{k}" for k in ks]}


def evaluate_full_ranking(
    queries: torch.Tensor,
    item_table: torch.Tensor,
    histories: Sequence[Sequence[int]],
    targets: Sequence[int],
    ks: Sequence[int] = (10, 20, 30),
    *,
    similarity: str = "dot",
    batch_size: int = 1024,
    chunk_size: int = 65536,
    show_progress: bool = False,
    return_ranks: bool = False,
) -> dict[str, float] | tuple[dict[str, float], torch.Tensor]:
    """Rank the whole catalog for every user and return HR@K and NDCG@K.

    Args:
        queries: `[U, d]` user embeddings, one row per evaluated user.
        item_table: `[I, d]` item embeddings.
        histories: For each user, the item indices to exclude (score minus infinity): training items for validation,
            training items plus the validation item for test.
        targets: For each user, the held-out item index.
        ks: Cut-offs. Defaults to (10, 20, 30).
        similarity: `"dot"` or `"cosine"`.
        batch_size: Users scored at once.
        chunk_size: Items scored at once.
        show_progress: Show a tqdm bar over user batches.
        return_ranks: Also return the 0-based target ranks.

    Returns:
        `{"hr@10": ..., "hr@20": ..., "hr@30": ..., "ndcg@10": ..., ...}` with fractions in [0, 1]; with
        `return_ranks=True`, a tuple `(metrics, ranks)`.

    Raises:
        ValueError: For mismatched lengths or dimensions, non-finite embeddings, no users, an empty or non-positive
            `ks`, or item indices outside the catalog.
    """
    if len(ks) == 0 or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks={list(ks)} must be a non-empty list of positive cut-offs, such as (10, 20, 30).")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1.")
    _check_tables(queries, item_table, similarity)
    if len(histories) != queries.shape[0] or len(targets) != queries.shape[0]:
        raise ValueError(
            f"Got {queries.shape[0]} queries, {len(histories)} histories and {len(targets)} targets; pass one of "
            "each per user."
        )
    if queries.shape[0] == 0:
        raise ValueError("No users to evaluate: queries is empty.")
    # Check every index once here, so that an error names the user's row in the whole input, not in a batch.
    _exclusion_pairs(histories, 0, item_table.shape[0])
    invalid_targets = [row for row, target in enumerate(targets) if not 0 <= int(target) < item_table.shape[0]]
    if invalid_targets:
        row = invalid_targets[0]
        raise ValueError(f"Target of row {row} is item index {int(targets[row])}, outside [0, {item_table.shape[0]}).")

    ranks = []
    starts = range(0, queries.shape[0], batch_size)
    for start in tqdm(
        starts, desc="Ranking", disable=not show_progress, total=math.ceil(queries.shape[0] / batch_size)
    ):
        end = start + batch_size
        with torch.no_grad():
            ranks.append(
                target_ranks(
                    queries[start:end],
                    item_table,
                    histories[start:end],
                    targets[start:end],
                    similarity=similarity,
                    chunk_size=chunk_size,
                )
            )
    all_ranks = torch.cat(ranks)
    metrics = metrics_from_ranks(all_ranks, ks)
    if return_ranks:
        return metrics, all_ranks
    return metrics
