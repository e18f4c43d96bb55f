"""Benchmark MQ-Tokenizers on a dataset's own LightGCN embeddings: codebook health and training time per variant.

For the item and the user side this trains the default MQ-Tokenizer and three ablations: masking off, one-way with a
single codebook of K * L codewords, and a residual quantizer. It prints reconstruction error, codeword usage,
perplexity, collision rate, the largest share of dead encoder units (hidden units that output zero for every row)
and training time as a table. The default tokenizers are saved, reloaded and checked to
give every entity the same code. The last line of stdout is one JSON object with the keys "item" and "user" (the
default configuration) and "variants" (every configuration).

The embeddings come from LightGCN trained here on the training interactions of the leave-one-out split, or from a
folder saved by `CollaborativeModel.save_pretrained` (for example by `benchmarks/collaborative.py --output_dir`).

Usage:
    python benchmarks/quantization.py --dataset lastfm --data_dir $DATA_DIR/LastFM
    python benchmarks/quantization.py --dataset ml1m --embeddings runs/ml1m-lightgcn --output_dir runs/ml1m-mq
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from tokenrec_hf.quantization import (
    MQTokenizer,
    MQTokenizerConfig,
    MQTokenizerTrainingArguments,
    dead_unit_fractions,
    evaluate_mq_tokenizer,
    plot_codebook_usage,
    plot_training_curves,
    train_mq_tokenizer,
)

VARIANTS = ("default", "no_mask", "one_way", "residual")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", required=True, help="Dataset name: lastfm, ml1m or beauty.")
    parser.add_argument("--data_dir", default=None, help="Folder with the dataset files (see load_named_dataset).")
    parser.add_argument(
        "--embeddings", default=None, help="A saved CollaborativeModel folder; skips training LightGCN here."
    )
    parser.add_argument("--output_dir", default=None, help="Where tokenizers and plots go (default: a temp folder).")
    parser.add_argument("--num_codebooks", type=int, default=3, help="K, codes per entity.")
    parser.add_argument("--codebook_size", type=int, default=256, help="L, codewords per codebook.")
    parser.add_argument("--epochs", type=int, default=None, help="Maximum MQ-Tokenizer epochs (default: library).")
    parser.add_argument(
        "--learning_rate", type=float, default=None, help="MQ-Tokenizer AdamW learning rate (default: library)."
    )
    parser.add_argument("--cf_epochs", type=int, default=None, help="Maximum LightGCN epochs (default: library).")
    parser.add_argument("--cf_patience", type=int, default=None, help="LightGCN early-stopping patience.")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help=f"Comma-separated subset of {', '.join(VARIANTS)}."
    )
    parser.add_argument("--sides", default="item,user", help="Comma-separated subset of item, user.")
    parser.add_argument("--seed", type=int, default=42, help="Seed of LightGCN and of every tokenizer.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice).")
    parser.add_argument("--disable_tqdm", action="store_true", help="Hide progress bars.")
    args = parser.parse_args(argv)

    args.variants = [name.strip() for name in args.variants.split(",") if name.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or not args.variants:
        parser.error(f"--variants got {unknown or args.variants}; choose from {list(VARIANTS)}.")
    args.sides = [name.strip() for name in args.sides.split(",") if name.strip()]
    if not args.sides or set(args.sides) - {"item", "user"}:
        parser.error(f"--sides got {args.sides}; choose from ['item', 'user'].")
    return args


def load_embeddings(args: argparse.Namespace) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return {"user": [U, d], "item": [I, d]} LightGCN representations and a description of where they came from."""
    from tokenrec_hf.collaborative import (
        CollaborativeConfig,
        CollaborativeModel,
        CollaborativeTrainingArguments,
        train_collaborative,
    )

    if args.embeddings is not None:
        model = CollaborativeModel.from_pretrained(args.embeddings)
        source = {"embeddings": str(args.embeddings), "architecture": model.config.architecture}
        rows = {"user": model.user_representations, "item": model.item_representations}
        return {side: table.detach().float().cpu() for side, table in rows.items()}, source

    from tokenrec_hf.data import load_named_dataset

    data = load_named_dataset(args.dataset, args.data_dir)
    config = CollaborativeConfig(architecture="lightgcn", num_users=data.num_users, num_items=data.num_items)
    cf_fields: dict[str, Any] = {"seed": args.seed, "disable_tqdm": args.disable_tqdm, "evaluate_test": False}
    if args.cf_epochs is not None:
        cf_fields["num_epochs"] = args.cf_epochs
    if args.cf_patience is not None:
        cf_fields["patience"] = args.cf_patience

    start = time.perf_counter()
    result = train_collaborative(config, data, CollaborativeTrainingArguments(**cf_fields))
    seconds = time.perf_counter() - start
    model = result.model

    # Users held out of every training stage must not shape the user tokenizer either.
    seen_users = torch.tensor(data.seen_users, dtype=torch.long)
    rows = {"user": model.user_representations[seen_users], "item": model.item_representations}
    source = {
        "embeddings": "lightgcn trained by this run",
        "lightgcn_best_epoch": result.best_epoch,
        "lightgcn_validation": result.validation,
        "lightgcn_train_seconds": round(seconds, 1),
    }
    print(
        f"LightGCN on {args.dataset}: best epoch {result.best_epoch}, validation {result.validation}, {seconds:.0f} s",
        flush=True,
    )
    return {side: table.detach().float().cpu() for side, table in rows.items()}, source


def variant_config(name: str, input_dim: int, args: argparse.Namespace) -> MQTokenizerConfig:
    base = MQTokenizerConfig(input_dim=input_dim, num_codebooks=args.num_codebooks, codebook_size=args.codebook_size)
    if name == "default":
        return base
    if name == "no_mask":
        return MQTokenizerConfig(
            input_dim=input_dim, num_codebooks=args.num_codebooks, codebook_size=args.codebook_size, mask_ratio=0.0
        )
    if name == "one_way":
        return MQTokenizerConfig.one_way(base)
    return MQTokenizerConfig(
        input_dim=input_dim, num_codebooks=args.num_codebooks, codebook_size=args.codebook_size, quantizer="residual"
    )


def count_codes_lost_on_reload(model: MQTokenizer, embeddings: torch.Tensor, folder: Path) -> int:
    """Save `model`, load it back and count the entities whose code differs."""
    model.save_pretrained(folder)
    reloaded = MQTokenizer.from_pretrained(folder)
    before, after = model.encode(embeddings), reloaded.encode(embeddings)
    return int((before != after).any(dim=1).sum())


def run_variant(
    side: str, name: str, embeddings: torch.Tensor, args: argparse.Namespace, output_dir: Path
) -> dict[str, Any]:
    config = variant_config(name, embeddings.shape[1], args)
    training_fields: dict[str, Any] = {"seed": args.seed, "disable_tqdm": args.disable_tqdm}
    if args.epochs is not None:
        training_fields["num_train_epochs"] = args.epochs
    if args.learning_rate is not None:
        training_fields["learning_rate"] = args.learning_rate

    start = time.perf_counter()
    model, result = train_mq_tokenizer(embeddings, config, MQTokenizerTrainingArguments(**training_fields))
    seconds = time.perf_counter() - start
    metrics = evaluate_mq_tokenizer(model, embeddings)

    codes = model.encode(embeddings)
    label = f"{args.dataset} {side} MQ-Tokenizer ({name}, K={config.num_codebooks}, L={config.codebook_size})"
    plot_codebook_usage(codes, config.codebook_size, output_dir / f"{side}-{name}-usage.png", title=label)
    plot_training_curves(result.history, output_dir / f"{side}-{name}-training.png", title=label)

    record = {
        "num_entities": metrics["num_entities"],
        "num_codebooks": config.num_codebooks,
        "codebook_size": config.codebook_size,
        "reconstruction_mse": round(metrics["reconstruction_mse"], 5),
        "relative_reconstruction_error": round(metrics["relative_reconstruction_error"], 4),
        "usage": [round(value, 4) for value in metrics["usage"]],
        "min_usage": round(metrics["min_usage"], 4),
        "perplexity": [round(value, 1) for value in metrics["perplexity"]],
        "min_perplexity": round(metrics["min_perplexity"], 1),
        "unique_codes": metrics["unique_codes"],
        "collision_rate": round(metrics["collision_rate"], 4),
        "dead_units": [[round(value, 3) for value in layers] for layers in dead_unit_fractions(model, embeddings)],
        "epochs": len(result.history),
        "best_epoch": result.best_epoch,
        "train_seconds": round(seconds, 1),
    }
    if name == "default":
        record["codes_lost_on_reload"] = count_codes_lost_on_reload(
            model, embeddings, output_dir / f"{side}_tokenizer"
        )
    return record


def max_dead_units(record: dict[str, Any]) -> float:
    """Return the highest fraction of dead hidden units over every encoder layer of one variant."""
    return max((value for layers in record["dead_units"] for value in layers), default=0.0)


def print_table(rows: list[tuple[str, str, dict[str, Any]]]) -> None:
    header = (
        f"{'side':<5} {'variant':<9} {'N':>6} {'KxL':>7} {'recon MSE':>10} {'rel err':>8} {'min use':>8} "
        f"{'min ppl':>8} {'collide':>8} {'unique':>7} {'dead':>6} {'epochs':>7} {'train s':>8}"
    )
    print(header)
    print("-" * len(header))
    for side, name, record in rows:
        shape = f"{record['num_codebooks']}x{record['codebook_size']}"
        print(
            f"{side:<5} {name:<9} {record['num_entities']:>6} {shape:>7} {record['reconstruction_mse']:>10.4f} "
            f"{record['relative_reconstruction_error']:>8.3f} {record['min_usage']:>8.3f} "
            f"{record['min_perplexity']:>8.1f} {record['collision_rate']:>8.4f} {record['unique_codes']:>7} "
            f"{max_dead_units(record):>6.2f} {record['epochs']:>7} {record['train_seconds']:>8.1f}"
        )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    output_dir = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="mq-benchmark-"))
    output_dir.mkdir(parents=True, exist_ok=True)

    embeddings, source = load_embeddings(args)
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for side in args.sides:
        for name in args.variants:
            print(f"Training the {side} MQ-Tokenizer, variant {name} ({embeddings[side].shape[0]} rows)", flush=True)
            record = run_variant(side, name, embeddings[side], args, output_dir)
            rows.append((side, name, record))
            print(
                f"  collision rate {record['collision_rate']:.4f}, min usage {record['min_usage']:.3f}, "
                f"relative reconstruction error {record['relative_reconstruction_error']:.3f}, "
                f"{record['train_seconds']:.0f} s",
                flush=True,
            )

    print()
    print(f"MQ-Tokenizers on {args.dataset} ({source['embeddings']}); plots and tokenizers in {output_dir}")
    print_table(rows)

    summary: dict[str, Any] = {"dataset": args.dataset, "source": source, "variants": {}}
    for side, name, record in rows:
        summary["variants"].setdefault(side, {})[name] = record
        if name == "default":
            summary[side] = record
    summary["hardware"] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(summary, sort_keys=True))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
