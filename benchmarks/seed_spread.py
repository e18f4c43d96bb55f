"""Seed-to-seed spread of `tokenrec run` results: mean and sample standard deviation over several run folders.

Each folder is the output of one `tokenrec run` (for example the same command with `--seed 42`, `43` and `44`). The
script reads every folder's `metrics.json`. For each model row (TokenRec with each prompt kind, and the collaborative
model) it prints the mean ± sample standard deviation of HR@K and NDCG@K as a Markdown table. Then it lists each
row's HR@20 and NDCG@20 per run. The last line of stdout is one JSON object with the same figures.

Usage:

    python benchmarks/seed_spread.py runs/lastfm-seed42 runs/lastfm-seed43 runs/lastfm-seed44
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

METRICS = ("hr@10", "hr@20", "hr@30", "ndcg@10", "ndcg@20", "ndcg@30")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+", help="Output folders of `tokenrec run`, at least two.")
    args = parser.parse_args(argv)
    if len(args.run_dirs) < 2:
        parser.error(f"got {len(args.run_dirs)} run folder; a spread needs at least two.")
    return args


def load_test_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    """Return the `test` block of a run folder's `metrics.json`."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise SystemExit(
            f"{path} not found. Pass the output folder of a finished `tokenrec run`, because a run writes "
            "metrics.json only when its test stage ends."
        )
    return json.loads(path.read_text())["test"]


def spread(runs: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Return `{row: {metric: {"mean", "std", "values"}}}` over the rows that every run has."""
    rows = [row for row in runs[0] if all(row in run for run in runs[1:])]
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows:
        summary[row] = {}
        for metric in METRICS:
            values = [run[row][metric] for run in runs]
            summary[row][metric] = {
                "mean": statistics.mean(values),
                "std": statistics.stdev(values),
                "values": values,
            }
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    run_dirs = [Path(folder) for folder in args.run_dirs]
    summary = spread([load_test_metrics(folder) for folder in run_dirs])

    print(f"Test metrics over {len(run_dirs)} runs: mean ± sample standard deviation")
    print()
    print("| row | " + " | ".join(metric.upper() for metric in METRICS) + " |")
    print("|---|" + "---:|" * len(METRICS))
    for row, metrics in summary.items():
        cells = [f"{metrics[metric]['mean']:.4f} ± {metrics[metric]['std']:.4f}" for metric in METRICS]
        print(f"| {row} | " + " | ".join(cells) + " |")
    print()
    print("Per run (" + ", ".join(folder.name for folder in run_dirs) + "):")
    for row, metrics in summary.items():
        hr = ", ".join(f"{value:.4f}" for value in metrics["hr@20"]["values"])
        ndcg = ", ".join(f"{value:.4f}" for value in metrics["ndcg@20"]["values"])
        print(f"  {row}: HR@20 {hr}; NDCG@20 {ndcg}")
    print()

    result = {"runs": [str(folder) for folder in run_dirs], "spread": summary}
    print(json.dumps(result, sort_keys=True))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
