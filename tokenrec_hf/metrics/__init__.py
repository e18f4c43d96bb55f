"""`evaluate` metric modules shipped with tokenrec_hf; each folder loads offline with `evaluate.load(folder)`."""

from pathlib import Path

from .ranking.ranking import RankingMetric

RANKING_METRIC_PATH = str(Path(__file__).resolve().parent / "ranking")

__all__ = ["RANKING_METRIC_PATH", "RankingMetric"]
