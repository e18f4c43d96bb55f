"""HR@K and NDCG@K for leave-one-out recommendation, as an `evaluate` metric.

This file only imports `datasets`, `evaluate` and `numpy`, so `evaluate.load("<this folder>")` can copy it into the
module cache and run it without the tokenrec_hf package. It is also importable as
`tokenrec_hf.metrics.ranking.ranking.RankingMetric`.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

_DESCRIPTION = """
Hit rate (HR@K) and normalized discounted cumulative gain (NDCG@K) for next-item recommendation with one relevant
item per user. `predictions` are ranked item-id lists (best first, history items already removed) and `references`
are the held-out item ids. HR@K is 1 when the reference is among the first K predictions. NDCG@K is
1 / log2(position + 2) for a 0-based position below K, because the ideal DCG with one relevant item is 1.
Results are fractions in [0, 1], averaged over users.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[int]]`): Ranked item ids per user, best first. Lists shorter than the largest K count
        items past their end as misses.
    references (`list[int]`): The held-out item id per user.
    ks (`list[int]`, defaults to `[10, 20, 30]`): Cut-offs.
Returns:
    dict: `hr@K` and `ndcg@K` for every K, as floats in [0, 1].
Examples:
    >>> metric = RankingMetric()
    >>> metric.compute(predictions=[[3, 1, 2], [5, 6, 7]], references=[1, 9], ks=[1, 2])
    {'hr@1': 0.0, 'hr@2': 0.5, 'ndcg@1': 0.0, 'ndcg@2': 0.31546487678572877}
"""

_CITATION = """
@inproceedings{qu2025tokenrec,
  title={Learning to Tokenize ID for LLM-based Generative Recommendations},
  author={Qu, Haohao and Fan, Wenqi and Zhao, Zihuai and Li, Qing},
  year={2025}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RankingMetric(evaluate.Metric):
    """HR@K and NDCG@K over ranked recommendation lists with one relevant item per user."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("int64")),
                    "references": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, ks=(10, 20, 30)) -> dict[str, float]:
        ks = [int(k) for k in ks]
        if not ks or min(ks) < 1:
            raise ValueError(f"ks={ks} must be a non-empty list of positive cut-offs, such as [10, 20, 30].")
        if len(predictions) == 0:
            raise ValueError("No predictions to score; pass one ranked list per user.")

        # 0-based position of each reference in its list; users whose reference is absent get +inf.
        positions = np.full(len(references), np.inf)
        for row, (ranked, target) in enumerate(zip(predictions, references, strict=True)):
            found = np.flatnonzero(np.asarray(ranked, dtype=np.int64) == int(target))
            if found.size:
                positions[row] = found[0]

        gains = np.where(np.isfinite(positions), 1.0 / np.log2(np.where(np.isfinite(positions), positions, 0) + 2), 0)
        result = {}
        for k in ks:
            result[f"hr@{k}"] = float(np.mean(positions < k))
        for k in ks:
            result[f"ndcg@{k}"] = float(np.mean(np.where(positions < k, gains, 0.0)))
        return result
