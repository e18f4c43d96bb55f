"""Inference latency: TokenRec's one forward pass + cosine top-K against autoregressive beam-search generation.

Both methods read the same prompts with a T5 of the same shape:

- TokenRec: one forward pass (the encoder with the default `encoder_mean` pooling, or the encoder and one decoder step
  with `--query-pooling decoder`), the projection head, and a cosine top-K over the whole item table with the user's
  history at minus infinity (`TokenRecForRetrieval` and `full_ranking_top_k`).
- Beam search, as in P5-style generative recommenders: `T5ForConditionalGeneration.generate` with `num_beams=top_k`
  and `num_return_sequences=top_k` produces `top_k` item identifiers of K=3 ID tokens plus the end-of-sequence token
  (4 decoding steps). A prefix tree over the catalog's codes restricts every step to tokens that continue a real
  item, as a generative recommender must: unconstrained beams would mostly spell codes that name no item, because
  3,646 items use a tiny share of the 256^3 possible codes. The unconstrained time is reported too, as a lower bound
  on the baseline's cost. Neither variant removes the user's history items, which would need more beams.

Prompts come from the real LastFM test split when the data and the t5-small tokenizer are available (each user's
test-time history in a history template, ID tokens from random codes because code values do not change timing).
Otherwise they are synthetic token ids whose lengths follow LastFM's prompt-length distribution (mean about 125
tokens). Weights are randomly initialized: latency does not depend on the weight values. Tokenization is outside the
timed region for both methods.

Usage:

    python benchmarks/inference.py                 # t5-small shape, 64 LastFM users
    python benchmarks/inference.py --preset tiny   # quick check

The last line of stdout is one JSON object with `tokenrec_ms_per_user`, `beam_search_ms_per_user` and `speedup`
(against constrained beam search), and `unconstrained_beam_search_ms_per_user` and `unconstrained_speedup`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import T5Config, T5ForConditionalGeneration

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tokenrec_hf.configuration_tokenrec import TokenRecConfig  # noqa: E402
from tokenrec_hf.evaluation import full_ranking_top_k  # noqa: E402
from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval  # noqa: E402

SHARED_DIR = Path(os.environ.get("TOKENREC_SHARED_DIR", REPO_ROOT.parent / "shared"))
T5_SMALL_DIR = SHARED_DIR / "models" / "t5-small"
LASTFM_NUM_ITEMS = 3646
NUM_CODEBOOKS, CODEBOOK_SIZE = 3, 256
# Length distribution used for synthetic prompts: LastFM's history-template prompts have a mean of about 125 tokens.
SYNTHETIC_MEAN_LENGTH, SYNTHETIC_MIN_LENGTH, SYNTHETIC_MAX_LENGTH = 125, 30, 512


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=["t5-small", "tiny"], default="t5-small", help="Backbone shape.")
    parser.add_argument("--num-users", type=int, default=None, help="Users to time (default: 64, tiny: 32).")
    parser.add_argument("--batch-size", type=int, default=16, help="Users per forward pass or generate call.")
    parser.add_argument("--top-k", type=int, default=20, help="Items per user; also the beam width.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed passes over all users; the median is reported.")
    parser.add_argument(
        "--max-length", type=int, default=512, help="Maximum prompt length in tokens; longer prompts are cut."
    )
    parser.add_argument("--data-dir", default=str(SHARED_DIR / "data"), help="Folder with LastFM/ (optional).")
    parser.add_argument("--synthetic", action="store_true", help="Use synthetic prompts even when LastFM exists.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="Torch device.")
    parser.add_argument("--seed", type=int, default=0, help="Seed for weights, codes and prompts.")
    parser.add_argument(
        "--query-pooling",
        choices=["encoder_mean", "decoder"],
        default=TokenRecConfig().query_pooling,
        help="Where TokenRec reads z (default: the library's default).",
    )
    parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar.")
    return parser.parse_args()


def backbone_config(preset: str, vocab_size: int) -> tuple[T5Config, str]:
    if preset == "tiny":
        config = T5Config(d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8)
        source = "tiny T5 (d_model 32, 2 layers), random init"
    elif (T5_SMALL_DIR / "config.json").is_file():
        config = T5Config.from_pretrained(T5_SMALL_DIR)
        source = f"t5-small shape from {T5_SMALL_DIR / 'config.json'}, random init"
    else:
        config = T5Config()
        source = "t5-small shape (T5Config defaults), random init"
    config.vocab_size = vocab_size
    config.dropout_rate = 0.0
    config.decoder_start_token_id = config.pad_token_id
    return config, source


Prompts = tuple[list[list[int]], list[list[int]], int, torch.Tensor, str]


def lastfm_prompts(args: argparse.Namespace, num_users: int) -> Prompts | None:
    """Tokenize history prompts of real LastFM users; None when the data or the t5-small tokenizer is missing.

    Returns the prompts' token ids, their histories, the vocabulary size, the token ids of every item's code
    `[num_items, K]` and a description of the source.
    """
    if args.synthetic or not (T5_SMALL_DIR / "tokenizer.json").is_file():
        return None
    try:
        from tokenrec_hf.data import load_named_dataset
        from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer

        data = load_named_dataset("lastfm", args.data_dir, download=False)
    except (ImportError, FileNotFoundError, OSError, ValueError) as error:
        print(f"LastFM prompts unavailable ({type(error).__name__}: {error}); using synthetic prompts.")
        return None

    generator = torch.Generator().manual_seed(args.seed)
    tokenizer = TokenRecTokenizer(
        str(T5_SMALL_DIR),
        num_user_codebooks=NUM_CODEBOOKS,
        user_codebook_size=CODEBOOK_SIZE,
        num_item_codebooks=NUM_CODEBOOKS,
        item_codebook_size=CODEBOOK_SIZE,
        user_codes=torch.randint(0, CODEBOOK_SIZE, (data.num_users, NUM_CODEBOOKS), generator=generator),
        item_codes=torch.randint(0, CODEBOOK_SIZE, (data.num_items, NUM_CODEBOOKS), generator=generator),
        user_ids=data.user_ids,
        item_ids=data.item_ids,
    )
    rng = random.Random(args.seed)
    users = rng.sample(range(data.num_users), min(num_users, data.num_users))
    template = tokenizer.history_template_ids[0]
    token_ids, histories = [], []
    for user in users:
        history = data.history(user, "test")
        prompt = tokenizer.build_prompt(user, history, template=template, rng=rng)
        ids = tokenizer.base_tokenizer(prompt)["input_ids"][: args.max_length]
        token_ids.append(ids)
        histories.append(history)
    source = f"real LastFM test prompts ({len(users)} users, history template {template})"
    item_token_ids = tokenizer.item_token_ids  # [K, L]
    item_code_tokens = item_token_ids[torch.arange(NUM_CODEBOOKS), tokenizer.item_codes]  # [num_items, K]
    return token_ids, histories, len(tokenizer), item_code_tokens, source


def synthetic_prompts(args: argparse.Namespace, num_users: int) -> Prompts:
    text_vocab_size = 32100
    vocab_size = text_vocab_size + 2 * NUM_CODEBOOKS * CODEBOOK_SIZE
    generator = torch.Generator().manual_seed(args.seed)
    rng = random.Random(args.seed)
    token_ids, histories = [], []
    for _ in range(num_users):
        length = int(min(max(rng.expovariate(1 / SYNTHETIC_MEAN_LENGTH), SYNTHETIC_MIN_LENGTH), args.max_length))
        ids = torch.randint(3, vocab_size, (length - 1,), generator=generator).tolist() + [1]
        token_ids.append(ids)
        histories.append(rng.sample(range(LASTFM_NUM_ITEMS), max(1, (length - 25) // NUM_CODEBOOKS)))
    # Item tokens follow the user tokens at the end of the vocabulary, one block of L ids per codebook.
    codes = torch.randint(0, CODEBOOK_SIZE, (LASTFM_NUM_ITEMS, NUM_CODEBOOKS), generator=generator)
    first_item_token = text_vocab_size + NUM_CODEBOOKS * CODEBOOK_SIZE
    item_code_tokens = first_item_token + torch.arange(NUM_CODEBOOKS) * CODEBOOK_SIZE + codes
    source = f"synthetic prompts ({num_users} users, LastFM-like lengths)"
    return token_ids, histories, vocab_size, item_code_tokens, source


def build_prefix_tree(item_code_tokens: torch.Tensor, eos_token_id: int) -> dict[tuple[int, ...], list[int]]:
    """Map every prefix of the items' code tokens to the tokens that may follow it; a full code is followed by EOS."""
    tree: dict[tuple[int, ...], set[int]] = {}
    for code in item_code_tokens.tolist():
        for depth in range(len(code)):
            tree.setdefault(tuple(code[:depth]), set()).add(code[depth])
        tree.setdefault(tuple(code), set()).add(eos_token_id)
    return {prefix: sorted(tokens) for prefix, tokens in tree.items()}


def pad_batches(token_ids: list[list[int]], batch_size: int, device: str) -> list[dict[str, torch.Tensor]]:
    batches = []
    for start in range(0, len(token_ids), batch_size):
        rows = token_ids[start : start + batch_size]
        width = max(len(row) for row in rows)
        input_ids = torch.zeros(len(rows), width, dtype=torch.long)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = torch.tensor(row)
        batches.append({"input_ids": input_ids.to(device), "attention_mask": (input_ids != 0).long().to(device)})
    return batches


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def prefix_allowed_tokens(prefix_tree: dict[tuple[int, ...], list[int]]):
    """Return a `prefix_allowed_tokens_fn` for `generate` that keeps every beam on a real item's code."""

    def allowed_tokens(batch_id: int, decoder_input_ids: torch.Tensor) -> list[int]:
        # The decoder input starts with decoder_start_token_id, which is not part of an item's code.
        return prefix_tree.get(tuple(decoder_input_ids[1:].tolist()), [])

    return allowed_tokens


@torch.inference_mode()
def time_tokenrec(model, item_table, batches, histories, args) -> float:
    start = time.perf_counter()
    offset = 0
    for batch in batches:
        size = batch["input_ids"].shape[0]
        queries = model(**batch).query_embeddings
        full_ranking_top_k(
            queries.float().cpu(),
            item_table,
            args.top_k,
            histories[offset : offset + size],
            similarity="cosine",
        )
        offset += size
    synchronize(args.device)
    return time.perf_counter() - start


@torch.inference_mode()
def time_beam_search(generator_model, batches, args, prefix_tree: dict | None = None) -> float:
    constraint = {} if prefix_tree is None else {"prefix_allowed_tokens_fn": prefix_allowed_tokens(prefix_tree)}
    start = time.perf_counter()
    for batch in batches:
        generator_model.generate(
            **batch,
            num_beams=args.top_k,
            num_return_sequences=args.top_k,
            max_new_tokens=NUM_CODEBOOKS + 1,
            min_new_tokens=NUM_CODEBOOKS + 1,
            do_sample=False,
            early_stopping=True,
            **constraint,
        )
    synchronize(args.device)
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    num_users = args.num_users
    if num_users is None:
        num_users = 32 if args.preset == "tiny" else 64
    if num_users < 1 or args.batch_size < 1 or args.repeats < 1:
        raise SystemExit(
            f"--num-users {num_users}, --batch-size {args.batch_size} and --repeats {args.repeats} must all be "
            "positive integers."
        )
    torch.manual_seed(args.seed)

    prompts = lastfm_prompts(args, num_users) or synthetic_prompts(args, num_users)
    token_ids, histories, vocab_size, item_code_tokens, prompt_source = prompts
    config, backbone_source = backbone_config(args.preset, vocab_size)
    lengths = [len(row) for row in token_ids]

    model_config = TokenRecConfig(
        backbone_config=config, num_items=LASTFM_NUM_ITEMS, vocab_size=vocab_size, query_pooling=args.query_pooling
    )
    model = TokenRecForRetrieval(model_config).to(args.device).eval()
    item_table = torch.randn(LASTFM_NUM_ITEMS, model_config.collaborative_dim)
    model.set_item_embeddings(item_table)
    generator_model = T5ForConditionalGeneration(config).to(args.device).eval()
    prefix_tree = build_prefix_tree(item_code_tokens, config.eos_token_id)
    batches = pad_batches(token_ids, args.batch_size, args.device)

    # Warm-up on the first batch, then timed passes over all users.
    time_tokenrec(model, item_table, batches[:1], histories, args)
    time_beam_search(generator_model, batches[:1], args, prefix_tree)
    time_beam_search(generator_model, batches[:1], args)
    times = {"tokenrec": [], "constrained": [], "unconstrained": []}
    for _ in tqdm(range(args.repeats), desc="timed passes", disable=args.no_progress):
        times["tokenrec"].append(time_tokenrec(model, item_table, batches, histories, args))
        times["constrained"].append(time_beam_search(generator_model, batches, args, prefix_tree))
        times["unconstrained"].append(time_beam_search(generator_model, batches, args))
    ms_per_user = {name: 1000 * statistics.median(values) / len(token_ids) for name, values in times.items()}
    tokenrec_ms, beam_ms, unconstrained_ms = (
        ms_per_user[name] for name in ("tokenrec", "constrained", "unconstrained")
    )

    print(f"backbone: {backbone_source}; {sum(p.numel() for p in generator_model.parameters()) / 1e6:.1f}M parameters")
    print(f"prompts: {prompt_source}; tokens per prompt mean {statistics.mean(lengths):.1f}, max {max(lengths)}")
    print(
        f"device: {args.device} ({platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()})"
        f"; batch size {args.batch_size}; top-{args.top_k}; {args.repeats} timed passes, median reported"
    )
    print(f"TokenRec query pooling: {args.query_pooling}")
    print()
    print("| method | ms per user | total s (median) |")
    print("|---|---:|---:|")
    print(
        f"| TokenRec: forward + cosine top-{args.top_k} over {LASTFM_NUM_ITEMS} items | {tokenrec_ms:.2f} | "
        f"{statistics.median(times['tokenrec']):.3f} |"
    )
    print(
        f"| beam search over the catalog's prefix tree: {args.top_k} beams, {NUM_CODEBOOKS + 1} tokens | "
        f"{beam_ms:.2f} | {statistics.median(times['constrained']):.3f} |"
    )
    print(
        f"| beam search, unconstrained: {args.top_k} beams, {NUM_CODEBOOKS + 1} tokens | {unconstrained_ms:.2f} | "
        f"{statistics.median(times['unconstrained']):.3f} |"
    )
    print()
    result = {
        "tokenrec_ms_per_user": round(tokenrec_ms, 3),
        "beam_search_ms_per_user": round(beam_ms, 3),
        "speedup": round(beam_ms / tokenrec_ms, 2),
        "unconstrained_beam_search_ms_per_user": round(unconstrained_ms, 3),
        "unconstrained_speedup": round(unconstrained_ms / tokenrec_ms, 2),
        "preset": args.preset,
        "query_pooling": args.query_pooling,
        "device": args.device,
        "num_users": len(token_ids),
        "batch_size": args.batch_size,
        "mean_prompt_tokens": round(statistics.mean(lengths), 1),
        "prompts": "lastfm" if prompt_source.startswith("real") else "synthetic",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
