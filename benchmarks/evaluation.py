"""Compare the vectorized full-ranking evaluator with a plain per-user Python loop.

Both rank the whole catalog for every user of a dataset (test stage: history = training items + validation item,
all masked with minus infinity) and must return the same HR@K / NDCG@K. Embeddings are random (seeded normal) unless
`--model_dir` points to a saved `CollaborativeModel`. The last line of stdout is one JSON object.

Example:

    python benchmarks/evaluation.py --dataset ml1m --data_dir $DATA_DIR/ML1M
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from tqdm.auto import tqdm

from tokenrec_hf.data import load_named_dataset
from tokenrec_hf.evaluation import evaluate_full_ranking, metrics_from_ranks

KS = (10, 20, 30)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="ml1m", help="Dataset name: lastfm, ml1m, beauty or clothing.")
    parser.add_argument("--data_dir", default=None, help="Folder with the dataset files (else TOKENREC_DATA_DIR).")
    parser.add_argument("--model_dir", default=None, help="A saved CollaborativeModel; default: random embeddings.")
    parser.add_argument("--embedding_dim", type=int, default=64, help="Size of the random embeddings.")
    parser.add_argument("--batch_size", type=int, default=1024, help="Users ranked at once by the vectorized path.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the random embeddings.")
    parser.add_argument("--num_threads", type=int, default=1, help="torch intra-op threads for both paths.")
    parser.add_argument("--disable_tqdm", action="store_true", help="Hide progress bars.")
    return parser.parse_args(argv)


def loop_ranks(queries: torch.Tensor, items: torch.Tensor, histories, targets, show_progress: bool) -> torch.Tensor:
    """Rank one user at a time: score all items, mask the history, stable-sort, find the target."""
    ranks = []
    for query, history, target in tqdm(
        zip(queries, histories, targets, strict=True),
        total=len(targets),
        desc="Per-user loop",
        disable=not show_progress,
    ):
        scores = items @ query
        scores[torch.tensor(history, dtype=torch.long)] = float("-inf")
        order = torch.sort(scores, descending=True, stable=True).indices
        ranks.append(int((order == target).nonzero()[0]))
    return torch.tensor(ranks)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    data = load_named_dataset(args.dataset, args.data_dir)
    users = list(range(data.num_users))
    histories = [data.history(user, "test") for user in users]
    targets = [data.test[user] for user in users]

    if args.model_dir:
        from tokenrec_hf.collaborative import CollaborativeModel

        model = CollaborativeModel.from_pretrained(args.model_dir)
        queries, items, source = model.user_representations, model.item_representations, f"model {args.model_dir}"
    else:
        generator = torch.Generator().manual_seed(args.seed)
        queries = torch.randn(data.num_users, args.embedding_dim, generator=generator)
        items = torch.randn(data.num_items, args.embedding_dim, generator=generator)
        source = f"random normal embeddings (seed {args.seed}, dim {args.embedding_dim})"

    started = time.perf_counter()
    vectorized = evaluate_full_ranking(queries, items, histories, targets, KS, batch_size=args.batch_size)
    vectorized_seconds = time.perf_counter() - started

    started = time.perf_counter()
    loop = metrics_from_ranks(loop_ranks(queries, items, histories, targets, not args.disable_tqdm), KS)
    loop_seconds = time.perf_counter() - started

    identical = all(vectorized[key] == loop[key] for key in vectorized)
    speedup = loop_seconds / vectorized_seconds
    print(f"{data}: {len(users)} users x {data.num_items} items, {source}, {args.num_threads} thread(s)")
    print(f"{'method':>14} | {'seconds':>8} | " + " | ".join(f"{key:>8}" for key in vectorized))
    for name, seconds, metrics in (
        ("vectorized", vectorized_seconds, vectorized),
        ("per-user loop", loop_seconds, loop),
    ):
        print(f"{name:>14} | {seconds:8.2f} | " + " | ".join(f"{value:8.4f}" for value in metrics.values()))
    print(f"identical metrics: {identical}   speedup: {speedup:.1f}x")

    figures = {
        "dataset": args.dataset,
        "users": len(users),
        "items": data.num_items,
        "embeddings": source,
        "vectorized_seconds": vectorized_seconds,
        "loop_seconds": loop_seconds,
        "speedup": speedup,
        "identical": identical,
        "metrics": vectorized,
    }
    print(json.dumps(figures))
    if not identical:
        raise SystemExit("The vectorized and per-user metrics differ; see the table above.")
    return figures


if __name__ == "__main__":
    main()
