"""Tests for full-ranking evaluation and the `ranking` evaluate metric."""

from __future__ import annotations

import math

import evaluate
import pytest
import torch

from tokenrec_hf.evaluation import evaluate_full_ranking, full_ranking_top_k, metrics_from_ranks, target_ranks
from tokenrec_hf.metrics import RANKING_METRIC_PATH, RankingMetric


def _reference_ranks(queries, items, histories, targets, similarity="dot"):
    """Rank with a per-user stable sort, the slow and obvious way."""
    if similarity == "cosine":
        queries = torch.nn.functional.normalize(queries, dim=-1)
        items = torch.nn.functional.normalize(items, dim=-1)
    ranks = []
    for query, history, target in zip(queries, histories, targets, strict=True):
        scores = items @ query
        for item in history:
            if item != target:
                scores[item] = float("-inf")
        order = torch.sort(scores, descending=True, stable=True).indices.tolist()
        ranks.append(order.index(target))
    return torch.tensor(ranks)


@pytest.fixture()
def random_case():
    generator = torch.Generator().manual_seed(0)
    queries = torch.randn(37, 8, generator=generator)
    items = torch.randn(53, 8, generator=generator)
    histories = [torch.randperm(53, generator=generator)[: 1 + row % 9].tolist() for row in range(37)]
    targets = []
    for history in histories:
        candidates = [item for item in torch.randperm(53, generator=generator).tolist() if item not in history]
        targets.append(candidates[0])
    return queries, items, histories, targets


@pytest.mark.parametrize("similarity", ["dot", "cosine"])
@pytest.mark.parametrize("chunk_size", [7, 53, 1000])
def test_target_ranks_match_sort(random_case, similarity, chunk_size):
    queries, items, histories, targets = random_case
    expected = _reference_ranks(queries, items, histories, targets, similarity)

    ranks = target_ranks(queries, items, histories, targets, similarity=similarity, chunk_size=chunk_size)

    assert torch.equal(ranks, expected)


@pytest.mark.parametrize("chunk_size", [5, 16, 1000])
def test_top_k_matches_sort(random_case, chunk_size):
    queries, items, histories, _ = random_case
    scores, indices = full_ranking_top_k(queries, items, 10, histories, chunk_size=chunk_size)

    full = queries @ items.T
    for row, history in enumerate(histories):
        full[row, history] = float("-inf")
    expected_scores, expected_indices = full.topk(10, dim=1)
    assert torch.allclose(scores, expected_scores)
    assert torch.equal(indices, expected_indices)
    for row, history in enumerate(histories):
        assert not set(indices[row].tolist()) & set(history)


def test_history_masked_with_minus_infinity_not_zero():
    # Every item scores negative; a history item set to 0 would rank first, minus infinity ranks it last.
    queries = torch.tensor([[1.0, 0.0]])
    items = -torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])

    scores, indices = full_ranking_top_k(queries, items, 2, [[0]])
    ranks = target_ranks(queries, items, [[0]], [1])

    assert indices.tolist() == [[1, 2]]
    assert torch.isfinite(scores).all()
    assert ranks.tolist() == [0]


def test_metrics_from_ranks_values():
    ranks = torch.tensor([0, 9, 10, 25, 100])

    metrics = metrics_from_ranks(ranks, ks=(10, 20, 30))

    assert list(metrics) == ["hr@10", "hr@20", "hr@30", "ndcg@10", "ndcg@20", "ndcg@30"]
    assert metrics["hr@10"] == pytest.approx(2 / 5)
    assert metrics["hr@20"] == pytest.approx(3 / 5)
    assert metrics["hr@30"] == pytest.approx(4 / 5)
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(11)) / 5)
    assert metrics["ndcg@30"] == pytest.approx((1 + 1 / math.log2(11) + 1 / math.log2(12) + 1 / math.log2(27)) / 5)


def test_evaluate_full_ranking_batches_agree(random_case):
    queries, items, histories, targets = random_case
    expected = metrics_from_ranks(_reference_ranks(queries, items, histories, targets), ks=(1, 5, 10))

    metrics, ranks = evaluate_full_ranking(
        queries, items, histories, targets, ks=(1, 5, 10), batch_size=4, chunk_size=11, return_ranks=True
    )

    assert metrics == pytest.approx(expected)
    assert ranks.shape == (37,)
    assert all(0.0 <= value <= 1.0 for value in metrics.values())


def test_target_in_history_is_not_masked():
    queries = torch.tensor([[1.0]])
    items = torch.tensor([[1.0], [2.0], [3.0]])

    ranks = target_ranks(queries, items, [[2, 1]], [2])

    assert ranks.tolist() == [0]


def test_dimension_mismatch_error():
    with pytest.raises(ValueError, match="queries have dimension 4 but item_table has dimension 8"):
        evaluate_full_ranking(torch.zeros(2, 4), torch.zeros(5, 8), [[], []], [0, 1])


def test_history_index_out_of_range_error():
    with pytest.raises(ValueError, match="item index 7, outside"):
        evaluate_full_ranking(torch.zeros(2, 4), torch.zeros(5, 4), [[1], [7]], [0, 1])


def test_error_names_row_in_whole_input():
    histories = [[0]] * 5 + [[9]]

    with pytest.raises(ValueError, match="History of row 5 contains item index 9"):
        evaluate_full_ranking(torch.zeros(6, 4), torch.zeros(5, 4), histories, [1] * 6, batch_size=2)


def test_length_mismatch_error():
    with pytest.raises(ValueError, match="2 queries, 1 histories and 2 targets"):
        evaluate_full_ranking(torch.zeros(2, 4), torch.zeros(5, 4), [[1]], [0, 1])


def test_non_finite_embeddings_error():
    items = torch.zeros(5, 4)
    items[3, 1] = float("nan")

    with pytest.raises(ValueError, match="item_table row 3 contains NaN"):
        evaluate_full_ranking(torch.zeros(2, 4), items, [[], []], [0, 1])


def test_unknown_similarity_error():
    with pytest.raises(ValueError, match="similarity='euclid' is not supported"):
        full_ranking_top_k(torch.zeros(2, 4), torch.zeros(5, 4), 3, similarity="euclid")


def test_ranking_metric_importable():
    metric = RankingMetric()

    result = metric.compute(predictions=[[3, 1, 2], [5, 6, 7], [9]], references=[1, 9, 9], ks=[1, 2])

    assert result["hr@1"] == pytest.approx(1 / 3)
    assert result["hr@2"] == pytest.approx(2 / 3)
    assert result["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 3)


def test_ranking_metric_loads_offline_and_matches_evaluator(random_case, monkeypatch):
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    queries, items, histories, targets = random_case
    _, top = full_ranking_top_k(queries, items, 10, histories)

    metric = evaluate.load(RANKING_METRIC_PATH)
    for predictions, reference in zip(top.tolist(), targets, strict=True):
        metric.add(predictions=predictions, references=reference)
    result = metric.compute(ks=[5, 10])

    expected = evaluate_full_ranking(queries, items, histories, targets, ks=(5, 10))
    assert result == pytest.approx(expected)
