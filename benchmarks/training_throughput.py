"""Training throughput of TokenRec fine-tuning with dynamic padding against padding every prompt to 512 tokens.

The same model trains on the same LastFM training examples in three modes, in one run:

- `padded_512`: each batch padded to 512 tokens, as fixed-length pipelines do.
- `dynamic`: each batch padded to its longest prompt (TokenRecDataCollator), examples in random order
  (`train_sampling_strategy="random"`).
- `dynamic_grouped`: dynamic padding with length-grouped batches (`train_sampling_strategy="group_by_length"`, the
  TokenRecTrainingArguments default). The JSON's `dynamic_samples_per_second` and `speedup` report this mode, and
  `random_batch_*` the `dynamic` mode.

A step is forward, backward and an AdamW update. The measured batches are spread evenly over one epoch, the same
batches for `dynamic` and `padded_512`. The backbone is randomly initialized (no pretrained weights are needed for a
throughput figure), and the user and item codes are random, which changes no prompt length: every ID costs K tokens.

Example (t5-small shape, random init, batch 32):

    python benchmarks/training_throughput.py --data_dir /path/to/data --base_tokenizer /path/to/t5-small

The last line of the output is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import resource
import time

import torch
from tqdm.auto import tqdm
from transformers import T5Config

from tokenrec_hf.data import load_named_dataset
from tokenrec_hf.data_collator import EpochSeededRandomSampler, TokenRecDataCollator, TokenRecTrainingDataset
from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval
from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer

TINY_BACKBONE = {"d_model": 64, "d_ff": 128, "num_layers": 2, "num_heads": 4, "d_kv": 16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="lastfm", help="Named dataset to take the prompts from.")
    parser.add_argument("--data_dir", default=None, help="Dataset folder (or set TOKENREC_DATA_DIR).")
    parser.add_argument(
        "--base_tokenizer",
        default="google-t5/t5-small",
        help="T5 tokenizer folder or Hub id; its config.json, when present, gives the t5-small backbone shape.",
    )
    parser.add_argument("--preset", choices=["t5-small", "tiny"], default="t5-small", help="Backbone size.")
    parser.add_argument("--batch_size", type=int, default=32, help="Examples per step.")
    parser.add_argument("--steps", type=int, default=2, help="Measured steps per mode.")
    parser.add_argument("--warmup_steps", type=int, default=1, help="Unmeasured steps per mode.")
    parser.add_argument("--max_length", type=int, default=512, help="Prompt limit and fixed padded length.")
    parser.add_argument("--num_codebooks", type=int, default=3, help="ID tokens per user and per item (K).")
    parser.add_argument("--codebook_size", type=int, default=256, help="Codewords per codebook (L).")
    parser.add_argument("--device", default="cpu", help="Torch device, for example cpu or cuda.")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the codes, the model and the example order.")
    return parser.parse_args()


def build_tokenizer(args: argparse.Namespace, data) -> TokenRecTokenizer:
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.num_codebooks, args.codebook_size)
    return TokenRecTokenizer(
        args.base_tokenizer,
        num_user_codebooks=shape[0],
        user_codebook_size=shape[1],
        num_item_codebooks=shape[0],
        item_codebook_size=shape[1],
        user_codes=torch.randint(0, shape[1], (data.num_users, shape[0]), generator=generator),
        item_codes=torch.randint(0, shape[1], (data.num_items, shape[0]), generator=generator),
        user_ids=list(data.user_ids),
        item_ids=list(data.item_ids),
    )


def build_model(args: argparse.Namespace, tokenizer: TokenRecTokenizer, num_items: int) -> TokenRecForRetrieval:
    if args.preset == "tiny":
        backbone = T5Config(vocab_size=len(tokenizer), dropout_rate=0.1, **TINY_BACKBONE)
    else:
        try:
            backbone = T5Config.from_pretrained(args.base_tokenizer)
        except OSError:
            backbone = T5Config()  # transformers' T5Config defaults are the t5-small shape.
    backbone.vocab_size = len(tokenizer)
    item_table = torch.randn(num_items, 64, generator=torch.Generator().manual_seed(args.seed + 1))
    torch.manual_seed(args.seed)
    return TokenRecForRetrieval.from_backbone(backbone, tokenizer, item_table)


def pad_batch(batch: dict[str, torch.Tensor], length: int, pad_token_id: int) -> dict[str, torch.Tensor]:
    padded = dict(batch)
    extra = length - batch["input_ids"].shape[1]
    padded["input_ids"] = torch.nn.functional.pad(batch["input_ids"], (0, extra), value=pad_token_id)
    padded["attention_mask"] = torch.nn.functional.pad(batch["attention_mask"], (0, extra), value=0)
    return padded


def quantile_positions(count: int, total: int) -> list[int]:
    """Return `count` batch positions at the middles of `count` equal slices of an epoch of `total` batches."""
    return [min(int((slot + 0.5) * total / count), total - 1) for slot in range(count)]


def epoch_padded_length(order: list[int], lengths: list[int], batch_size: int) -> float:
    """Return the mean padded length over all full batches of an epoch in `order`."""
    maxima = [
        max(lengths[index] for index in order[start : start + batch_size])
        for start in range(0, len(order) - batch_size + 1, batch_size)
    ]
    return sum(maxima) / len(maxima)


def measure(model, initial_state, batches, warmup_steps, device, name) -> dict[str, float]:
    """Train on `batches` (the first `warmup_steps` unmeasured) and return samples/s and the padded lengths."""
    model.load_state_dict(initial_state)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    measured_samples, measured_seconds = 0, 0.0
    for step, batch in enumerate(tqdm(batches, desc=name, leave=False)):
        batch = {key: value.to(device) for key, value in batch.items()}
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if step >= warmup_steps:
            measured_seconds += time.perf_counter() - start
            measured_samples += batch["input_ids"].shape[0]

    measured = batches[warmup_steps:]
    result = {
        "samples_per_second": measured_samples / measured_seconds,
        "seconds_per_step": measured_seconds / len(measured),
        "mean_padded_length": sum(batch["input_ids"].shape[1] for batch in measured) / len(measured),
        "mean_real_tokens": sum(batch["attention_mask"].sum().item() for batch in measured)
        / sum(batch["input_ids"].shape[0] for batch in measured),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if device.type == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return result


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = load_named_dataset(args.dataset, args.data_dir)
    tokenizer = build_tokenizer(args, data)
    collator = TokenRecDataCollator(tokenizer, max_length=args.max_length, seed=args.seed)
    dataset = TokenRecTrainingDataset(data, "one_per_user", seed=args.seed)
    examples = [dataset[(0, index)] for index in range(len(dataset))]
    lengths = [collator.prompt_length(example) for example in examples]

    # The same epoch in random order and in length-grouped order (megabatches of 50 batches, as the trainer uses).
    random_order = [index for _, index in EpochSeededRandomSampler(len(dataset), seed=args.seed)]
    grouped_order = [
        index
        for _, index in EpochSeededRandomSampler(
            len(dataset), seed=args.seed, length_fn=lambda epoch: lengths, megabatch_size=50 * args.batch_size
        )
    ]
    # Measured batches sit at the middles of equal slices of the epoch. A sorted (grouped) epoch is therefore
    # represented by short and long batches alike. Warm-up steps reuse the median batch.
    num_batches = len(dataset) // args.batch_size
    chosen = [num_batches // 2] * args.warmup_steps + quantile_positions(args.steps, num_batches)

    def batches_from(order: list[int]) -> list[dict[str, torch.Tensor]]:
        return [
            collator([examples[index] for index in order[start * args.batch_size : (start + 1) * args.batch_size]])
            for start in chosen
        ]

    dynamic_batches = batches_from(random_order)
    grouped_batches = batches_from(grouped_order)
    padded_batches = [pad_batch(batch, args.max_length, tokenizer.pad_token_id) for batch in dynamic_batches]

    model = build_model(args, tokenizer, data.num_items).to(device)
    initial_state = copy.deepcopy(model.state_dict())
    num_parameters = sum(parameter.numel() for parameter in model.parameters())

    # Lowest memory first, so the process-wide peak RSS after each mode is that mode's peak.
    results = {
        "dynamic_grouped": measure(model, initial_state, grouped_batches, args.warmup_steps, device, "grouped"),
        "dynamic": measure(model, initial_state, dynamic_batches, args.warmup_steps, device, "dynamic"),
        "padded_512": measure(model, initial_state, padded_batches, args.warmup_steps, device, "padded"),
    }

    print(
        f"dataset={data.name} examples/epoch={len(dataset)} prompt tokens: mean {sum(lengths) / len(lengths):.1f}, "
        f"max {max(lengths)}; mean padded length over the whole epoch: dynamic "
        f"{epoch_padded_length(random_order, lengths, args.batch_size):.1f}, grouped "
        f"{epoch_padded_length(grouped_order, lengths, args.batch_size):.1f}"
    )
    print(
        f"backbone={args.preset} (random init, {num_parameters / 1e6:.1f}M parameters) batch={args.batch_size} "
        f"device={device} measured steps={args.steps} (+{args.warmup_steps} warm-up) on {platform.processor() or platform.machine()}"
    )
    header = f"{'mode':<16} {'samples/s':>10} {'s/step':>8} {'padded len':>10} {'real tok':>9} {'peak RSS MB':>12}"
    print(header)
    print("-" * len(header))
    for name, result in results.items():
        print(
            f"{name:<16} {result['samples_per_second']:>10.3f} {result['seconds_per_step']:>8.2f} "
            f"{result['mean_padded_length']:>10.1f} {result['mean_real_tokens']:>9.1f} {result['peak_rss_mb']:>12.0f}"
        )

    padded_speed = results["padded_512"]["samples_per_second"]
    summary = {
        "dataset": data.name,
        "preset": args.preset,
        "random_init": True,
        "device": str(device),
        "batch_size": args.batch_size,
        "measured_steps": args.steps,
        "mean_prompt_tokens": sum(lengths) / len(lengths),
        "max_prompt_tokens": max(lengths),
        # "dynamic" is what TokenRecTrainer does by default: dynamic padding of length-grouped batches.
        "dynamic_samples_per_second": results["dynamic_grouped"]["samples_per_second"],
        "padded_samples_per_second": padded_speed,
        "speedup": results["dynamic_grouped"]["samples_per_second"] / padded_speed,
        "random_batch_samples_per_second": results["dynamic"]["samples_per_second"],
        "random_batch_speedup": results["dynamic"]["samples_per_second"] / padded_speed,
        "dynamic_mean_padded_length": results["dynamic_grouped"]["mean_padded_length"],
        "dynamic_epoch_mean_padded_length": epoch_padded_length(grouped_order, lengths, args.batch_size),
        "random_batch_mean_padded_length": results["dynamic"]["mean_padded_length"],
        "random_batch_epoch_mean_padded_length": epoch_padded_length(random_order, lengths, args.batch_size),
        "peak_rss_mb_dynamic": results["dynamic_grouped"]["peak_rss_mb"],
        "peak_rss_mb_random_batch": results["dynamic"]["peak_rss_mb"],
        "peak_rss_mb_padded": results["padded_512"]["peak_rss_mb"],
    }
    if device.type == "cuda":
        for name, result in results.items():
            summary[f"peak_cuda_mb_{name}"] = result["peak_cuda_mb"]
    summary = {
        key: round(value, 4) if isinstance(value, float) and math.isfinite(value) else value
        for key, value in summary.items()
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
