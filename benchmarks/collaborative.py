"""Train LightGCN or MF under the leave-one-out protocol and report ranking quality, speed and memory.

Before the full training run, the LightGCN epoch time is measured twice with the same batch size: once with the fused
propagation (CSR adjacency, hand-written backward) and once with plain autograd through `torch.sparse.mm` on a COO
adjacency. The ratio is printed as "speedup". The last line of stdout is one JSON object with all figures.

Example:

    python benchmarks/collaborative.py --dataset lastfm --data_dir $DATA_DIR/LastFM --model lightgcn
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

import torch

from tokenrec_hf.collaborative import (
    CollaborativeConfig,
    CollaborativeTrainingArguments,
    evaluate_collaborative,
    train_collaborative,
)
from tokenrec_hf.data import load_named_dataset

KS = (10, 20, 30)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="Dataset name: lastfm, ml1m, beauty or clothing.")
    parser.add_argument("--data_dir", default=None, help="Folder with the dataset files (else TOKENREC_DATA_DIR).")
    parser.add_argument("--model", choices=("lightgcn", "mf"), default="lightgcn", help="Collaborative model.")
    parser.add_argument("--embedding_dim", type=int, default=64, help="Embedding size.")
    parser.add_argument("--num_layers", type=int, default=3, help="LightGCN propagation layers.")
    parser.add_argument("--epochs", type=int, default=1000, help="Maximum training epochs.")
    parser.add_argument("--batch_size", type=int, default=2048, help="BPR triples per step.")
    parser.add_argument("--learning_rate", type=float, default=None, help="Adam learning rate (default: tuned).")
    parser.add_argument("--reg_weight", type=float, default=None, help="L2 weight on layer-0 rows (default: tuned).")
    parser.add_argument("--eval_interval", type=int, default=5, help="Epochs between validation evaluations.")
    parser.add_argument("--patience", type=int, default=10, help="Evaluations without improvement before stopping.")
    parser.add_argument("--seed", type=int, default=42, help="Seed of initialization, shuffling and negatives.")
    parser.add_argument(
        "--unseen_user_fraction",
        type=float,
        default=0.0,
        help="Share of users (fewest interactions first) held out of training and scored through fold-in.",
    )
    parser.add_argument(
        "--speed_epochs",
        type=int,
        default=3,
        help="Epochs timed for each LightGCN implementation in the speed comparison; 0 skips it.",
    )
    parser.add_argument(
        "--num_threads",
        type=int,
        default=1,
        help="torch intra-op threads. One thread avoids oversubscription when other jobs share the CPU.",
    )
    parser.add_argument("--output_dir", default=None, help="Save the trained model and the training curve here.")
    parser.add_argument(
        "--resume_from_checkpoint",
        action="store_true",
        help="Continue from output_dir/checkpoint, written by an earlier run with the same settings.",
    )
    parser.add_argument("--disable_tqdm", action="store_true", help="Hide progress bars.")
    return parser.parse_args(argv)


# Tuned on LastFM validation NDCG@20 (see docs/collaborative.md).
TUNED = {
    "lightgcn": {"learning_rate": 5e-3, "reg_weight": 1e-4},
    "mf": {"learning_rate": 1e-3, "reg_weight": 1e-4},
}


def peak_memory_mb() -> float:
    """Peak resident set size of this process in MiB (Linux reports `ru_maxrss` in KiB, macOS in bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def time_epochs(data, config_kwargs: dict, args: argparse.Namespace, fused: bool) -> float:
    """Return the mean seconds per LightGCN training epoch (no evaluation inside the timed part)."""
    config = CollaborativeConfig(**config_kwargs)
    training_args = CollaborativeTrainingArguments(
        num_epochs=args.speed_epochs,
        batch_size=args.batch_size,
        eval_interval=args.speed_epochs,
        seed=args.seed,
        fused=fused,
        evaluate_test=False,
        disable_tqdm=True,
        **{key: getattr(args, key) for key in ("learning_rate", "reg_weight")},
    )
    return train_collaborative(config, data, training_args).seconds_per_epoch


def format_table(rows: dict[str, dict[str, float]]) -> str:
    header = ["split", *[f"HR@{k}" for k in KS], *[f"NDCG@{k}" for k in KS]]
    lines = [" | ".join(f"{name:>8}" for name in header)]
    for split, metrics in rows.items():
        values = [metrics[f"hr@{k}"] for k in KS] + [metrics[f"ndcg@{k}"] for k in KS]
        lines.append(" | ".join([f"{split:>8}", *[f"{value:8.4f}" for value in values]]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.set_num_threads(args.num_threads)
    for key, value in TUNED[args.model].items():
        if getattr(args, key) is None:
            setattr(args, key, value)

    started = time.perf_counter()
    data = load_named_dataset(args.dataset, args.data_dir, unseen_user_fraction=args.unseen_user_fraction)
    print(f"{data}: {len(data.seen_users)} seen users, loaded in {time.perf_counter() - started:.1f} s")
    config_kwargs = {
        "architecture": args.model,
        "num_users": data.num_users,
        "num_items": data.num_items,
        "embedding_dim": args.embedding_dim,
        "num_layers": args.num_layers,
    }

    # Speed comparison of the two LightGCN implementations, same data, batch size and seed.
    speed = {}
    if args.model == "lightgcn" and args.speed_epochs > 0:
        speed["fused_seconds_per_epoch"] = time_epochs(data, config_kwargs, args, fused=True)
        speed["plain_autograd_seconds_per_epoch"] = time_epochs(data, config_kwargs, args, fused=False)
        speed["speedup"] = speed["plain_autograd_seconds_per_epoch"] / speed["fused_seconds_per_epoch"]
        print(
            f"LightGCN epoch, batch size {args.batch_size}: fused {speed['fused_seconds_per_epoch']:.3f} s, plain "
            f"autograd {speed['plain_autograd_seconds_per_epoch']:.3f} s, speedup {speed['speedup']:.2f}x"
        )

    # Full training with early stopping on validation NDCG@20; test is scored once at the end.
    training_args = CollaborativeTrainingArguments(
        output_dir=args.output_dir,
        num_epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        reg_weight=args.reg_weight,
        eval_interval=args.eval_interval,
        patience=args.patience,
        seed=args.seed,
        resume_from_checkpoint=args.resume_from_checkpoint or None,
        disable_tqdm=args.disable_tqdm,
    )
    started = time.perf_counter()
    result = train_collaborative(CollaborativeConfig(**config_kwargs), data, training_args)
    train_seconds = time.perf_counter() - started
    rows = {"valid": result.validation, "test": result.test}

    # Users held out of training get embeddings by fold-in and are reported separately.
    unseen = {}
    if data.unseen_users:
        model = result.model
        for stage in ("valid", "test"):
            histories = [data.history(user, stage) for user in data.unseen_users]
            embeddings = model.fold_in_users(histories)
            unseen[stage] = evaluate_collaborative(
                model, data, stage, ks=KS, users=data.unseen_users, user_embeddings=embeddings
            )
        rows["unseen valid"], rows["unseen test"] = unseen["valid"], unseen["test"]

    if args.output_dir:
        result.model.save_pretrained(args.output_dir)
        print(f"Saved the model to {args.output_dir}")

    print(
        f"\n{args.model} on {args.dataset}: best epoch {result.best_epoch} of {result.epochs_trained} "
        f"(stopped early: {result.stopped_early}), {train_seconds:.0f} s in total, lr {args.learning_rate}, "
        f"reg {args.reg_weight}, batch {args.batch_size}, {args.num_threads} thread(s)"
    )
    print(format_table(rows))
    print(f"seconds per epoch: {result.seconds_per_epoch:.3f}   peak memory: {peak_memory_mb():.0f} MiB")

    figures = {
        "dataset": args.dataset,
        "model": args.model,
        "valid": result.validation,
        "test": result.test,
        "seconds_per_epoch": result.seconds_per_epoch,
        "peak_memory_mb": peak_memory_mb(),
        "speedup": speed.get("speedup"),
        **{key: value for key, value in speed.items() if key != "speedup"},
        "best_epoch": result.best_epoch,
        "epochs_trained": result.epochs_trained,
        "train_seconds": train_seconds,
        "hyperparameters": {
            "learning_rate": args.learning_rate,
            "reg_weight": args.reg_weight,
            "batch_size": args.batch_size,
            "embedding_dim": args.embedding_dim,
            "num_layers": args.num_layers if args.model == "lightgcn" else 0,
            "eval_interval": args.eval_interval,
            "patience": args.patience,
            "seed": args.seed,
            "num_threads": args.num_threads,
        },
    }
    if unseen:
        figures["unseen_users"] = len(data.unseen_users)
        figures["unseen_valid"], figures["unseen_test"] = unseen["valid"], unseen["test"]
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
