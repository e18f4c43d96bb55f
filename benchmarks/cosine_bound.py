"""Rank the test items of a finished `tokenrec run` folder with fixed queries built from its collaborative model.

TokenRec's query z is scored by cosine against the item table, so the best z it can learn is bounded by how well
cosine similarity ranks with the collaborative vectors themselves. This script scores, for the seen users of a run:

- `dot_user`: the collaborative model's own ranking (user vector dot item vector), the baseline of the run;
- `cosine_user`: cosine between the user's collaborative vector and every item;
- `cosine_history_mean`: cosine between the mean of the user's history item vectors and every item.

A TokenRec model that reproduced either cosine query exactly would score its row. Full ranking, history items at
minus infinity, test targets with training items + the validation item as history. The last line of stdout is one
JSON object.

Example:

    python benchmarks/cosine_bound.py --run_dir runs/lastfm-cpu-small
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tokenrec_hf.collaborative import CollaborativeModel
from tokenrec_hf.data import InteractionData
from tokenrec_hf.evaluation import evaluate_full_ranking

KS = (10, 20, 30)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run_dir", required=True, help="Output folder of `tokenrec run` with data/ and collaborative/."
    )
    parser.add_argument("--stage", choices=["valid", "test"], default="test", help="Targets to rank.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch intra-op threads.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    run_dir = Path(args.run_dir)
    for folder in ("data", "collaborative"):
        if not (run_dir / folder).is_dir():
            raise SystemExit(
                f"{run_dir / folder} does not exist. Pass the output folder of a `tokenrec run` that finished its "
                "collaborative stage."
            )
    data = InteractionData.from_pretrained(run_dir / "data")
    model = CollaborativeModel.from_pretrained(run_dir / "collaborative")

    users = list(data.seen_users)
    histories = [list(data.history(user, args.stage)) for user in users]
    targets = [data.valid[user] if args.stage == "valid" else data.test[user] for user in users]
    user_table = model.user_representations[users].detach()
    item_table = model.item_representations.detach()
    history_means = torch.stack([item_table[history].mean(dim=0) for history in histories])

    queries = {
        "dot_user": (user_table, "dot"),
        "cosine_user": (user_table, "cosine"),
        "cosine_history_mean": (history_means, "cosine"),
    }
    results = {
        name: evaluate_full_ranking(query, item_table, histories, targets, KS, similarity=similarity)
        for name, (query, similarity) in queries.items()
    }

    names = [f"{metric}@{k}" for metric in ("hr", "ndcg") for k in KS]
    print(f"{model.config.architecture} from {run_dir}, {len(users)} seen users, {args.stage} targets")
    print("| query | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for name, row in results.items():
        print(f"| {name} | " + " | ".join(f"{row[key]:.4f}" for key in names) + " |")
    print(json.dumps({"run_dir": str(run_dir), "stage": args.stage, **results}))
    return results


if __name__ == "__main__":
    main()
