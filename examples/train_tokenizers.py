"""Train the user and item MQ-Tokenizers on a collaborative model and save a TokenRecTokenizer.

The script reads a collaborative model saved with `CollaborativeModel.save_pretrained` (its user and item
representations and raw id maps), trains one MQ-Tokenizer per side, tokenizes every user and item, and writes:

- `<save_directory>/`: the TokenRecTokenizer folder (T5 files, code tables, id maps, both MQ-Tokenizers);
- `<plot_dir>/user_codebook_usage.png` and `item_codebook_usage.png`: codeword usage per codebook;
- `<plot_dir>/tokenizer_metrics.json`: codebook usage, perplexity and collision rate per side, and training summaries.

With `--interaction_data`, the user MQ-Tokenizer trains on the seen users only and the held-out (unseen) users are left
out of the code table: tokenize them later from folded-in embeddings with `tokenizer.add_users(...)`.

Example (random-init collaborative model folders work too, for a smoke test):

```bash
python examples/train_tokenizers.py \
    --collaborative_model runs/lastfm/collaborative \
    --interaction_data runs/lastfm/data \
    --base_tokenizer /path/to/t5-small \
    --save_directory runs/lastfm/tokenizer \
    --num_user_codebooks 3 --user_codebook_size 256 \
    --num_item_codebooks 3 --item_codebook_size 256 \
    --num_train_epochs 400 --seed 42 --checkpoint_dir runs/lastfm/mq_checkpoints
```
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import HfArgumentParser

from tokenrec_hf.collaborative import CollaborativeModel
from tokenrec_hf.data import InteractionData
from tokenrec_hf.quantization import (
    MQTokenizerConfig,
    MQTokenizerTrainingArguments,
    codebook_metrics,
    plot_codebook_usage,
    train_mq_tokenizer,
)
from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer
from tokenrec_hf.utils import atomic_write_json


@dataclass
class ScriptArguments:
    """Inputs, outputs and MQ-Tokenizer shapes of the script."""

    collaborative_model: str = field(metadata={"help": "Folder (or Hub id) of a saved CollaborativeModel."})
    base_tokenizer: str = field(metadata={"help": "Folder (or Hub id) of the T5 tokenizer to extend."})
    save_directory: str = field(metadata={"help": "Folder for the TokenRecTokenizer."})
    interaction_data: str | None = field(
        default=None,
        metadata={"help": "Folder of a saved InteractionData; its unseen users are kept out of the user tokenizer."},
    )
    plot_dir: str | None = field(
        default=None, metadata={"help": "Folder for the usage plots and metrics. Defaults to <save_directory>_plots."}
    )
    num_user_codebooks: int = field(default=3, metadata={"help": "K of the user MQ-Tokenizer."})
    user_codebook_size: int = field(default=256, metadata={"help": "L of the user MQ-Tokenizer."})
    num_item_codebooks: int = field(default=3, metadata={"help": "K of the item MQ-Tokenizer."})
    item_codebook_size: int = field(default=256, metadata={"help": "L of the item MQ-Tokenizer."})
    codebook_dim: int = field(default=64, metadata={"help": "Width of the codewords of both MQ-Tokenizers."})
    mask_ratio: float = field(default=0.2, metadata={"help": "Probability of masking an input element in training."})
    beta: float = field(default=0.25, metadata={"help": "Weight of the commitment loss."})
    quantizer: str = field(default="kway", metadata={"help": "'kway' (MQ-Tokenizer) or 'residual' (RQ baseline)."})


@dataclass
class TrainingOptions:
    """MQ-Tokenizer training settings, shared by both sides.

    They map onto `MQTokenizerTrainingArguments`, whose `resume_from_checkpoint: str | bool | None` field
    `HfArgumentParser` cannot parse.
    """

    num_train_epochs: int = field(default=400, metadata={"help": "Maximum number of passes over the embeddings."})
    train_batch_size: int = field(default=256, metadata={"help": "Embeddings per optimization step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    validation_fraction: float = field(
        default=0.1, metadata={"help": "Share of the embeddings held out for early stopping, in [0, 0.5]."}
    )
    early_stopping_patience: int | None = field(
        default=40, metadata={"help": "Epochs without a lower validation reconstruction error before stopping."}
    )
    seed: int = field(default=42, metadata={"help": "Seed for the split, the shuffling, the masks and k-means."})
    checkpoint_dir: str | None = field(
        default=None, metadata={"help": "Folder for resumable checkpoints, one subfolder per side; none when unset."}
    )
    save_every_epochs: int = field(default=0, metadata={"help": "Checkpoint every this many epochs; 0 disables."})
    resume: bool = field(default=False, metadata={"help": "Resume each side from its latest checkpoint."})
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bars."})

    def to_training_arguments(self, side: str) -> MQTokenizerTrainingArguments:
        """Return the `MQTokenizerTrainingArguments` of one side, with its own checkpoint subfolder."""
        output_dir = str(Path(self.checkpoint_dir) / side) if self.checkpoint_dir is not None else None
        return MQTokenizerTrainingArguments(
            output_dir=output_dir,
            num_train_epochs=self.num_train_epochs,
            train_batch_size=self.train_batch_size,
            learning_rate=self.learning_rate,
            validation_fraction=self.validation_fraction,
            early_stopping_patience=self.early_stopping_patience,
            seed=self.seed,
            save_every_epochs=self.save_every_epochs,
            resume_from_checkpoint=True if self.resume else None,
            disable_tqdm=self.disable_tqdm,
        )


def _train_side(side: str, embeddings: torch.Tensor, script_args: ScriptArguments, options: TrainingOptions):
    config = MQTokenizerConfig(
        input_dim=embeddings.shape[1],
        num_codebooks=getattr(script_args, f"num_{side}_codebooks"),
        codebook_size=getattr(script_args, f"{side}_codebook_size"),
        codebook_dim=script_args.codebook_dim,
        mask_ratio=script_args.mask_ratio,
        beta=script_args.beta,
        quantizer=script_args.quantizer,
    )
    print(f"Training the {side} MQ-Tokenizer on {embeddings.shape[0]} embeddings of width {embeddings.shape[1]}.")
    return train_mq_tokenizer(embeddings, config, options.to_training_arguments(side))


def _format_metrics_table(metrics: dict[str, dict]) -> str:
    header = f"{'side':<6}{'entities':>10}{'min usage':>11}{'mean usage':>12}{'min perplexity':>16}{'collisions':>12}"
    lines = [header, "-" * len(header)]
    for side, values in metrics.items():
        lines.append(
            f"{side:<6}{values['num_entities']:>10}{values['min_usage']:>11.3f}{values['mean_usage']:>12.3f}"
            f"{values['min_perplexity']:>16.1f}{values['collision_rate']:>12.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> TokenRecTokenizer:
    """Train both MQ-Tokenizers, save the TokenRecTokenizer and the plots, and return the tokenizer."""
    parser = HfArgumentParser((ScriptArguments, TrainingOptions))
    script_args, options = parser.parse_args_into_dataclasses(args=argv)

    collaborative = CollaborativeModel.from_pretrained(script_args.collaborative_model)
    user_table = collaborative.user_representations.detach().float().cpu()
    item_table = collaborative.item_representations.detach().float().cpu()
    user_rows = list(range(user_table.shape[0]))
    if script_args.interaction_data is not None:
        data = InteractionData.from_pretrained(script_args.interaction_data)
        if data.user_ids != collaborative.user_ids or data.item_ids != collaborative.item_ids:
            raise ValueError(
                f"The id maps of {script_args.interaction_data} and {script_args.collaborative_model} differ; pass the "
                "interaction data the collaborative model was trained on."
            )
        user_rows = data.seen_users
        print(f"Keeping {len(data.unseen_users)} unseen users out of the user MQ-Tokenizer and the code table.")

    user_quantizer, user_result = _train_side("user", user_table[user_rows], script_args, options)
    item_quantizer, item_result = _train_side("item", item_table, script_args, options)

    tokenizer = TokenRecTokenizer.from_quantizers(
        script_args.base_tokenizer,
        user_quantizer,
        item_quantizer,
        user_table[user_rows],
        item_table,
        user_ids=[collaborative.user_ids[row] for row in user_rows],
        item_ids=collaborative.item_ids,
    )
    tokenizer.save_pretrained(script_args.save_directory)

    plot_dir = Path(script_args.plot_dir or f"{script_args.save_directory.rstrip('/')}_plots")
    metrics = {}
    for side, codes, size, result in (
        ("user", tokenizer.user_codes, tokenizer.user_codebook_size, user_result),
        ("item", tokenizer.item_codes, tokenizer.item_codebook_size, item_result),
    ):
        metrics[side] = codebook_metrics(codes, size)
        metrics[side]["best_epoch"] = result.best_epoch
        metrics[side]["best_validation_loss"] = result.best_validation_loss
        metrics[side]["train_runtime"] = result.train_runtime
        plot_codebook_usage(codes, size, plot_dir / f"{side}_codebook_usage.png", title=f"{side} codeword usage")
    atomic_write_json(plot_dir / "tokenizer_metrics.json", metrics)

    print(_format_metrics_table(metrics))
    print(
        f"Saved the tokenizer to {script_args.save_directory} ({len(tokenizer)} tokens) and the plots to {plot_dir}."
    )
    print(
        json.dumps({side: {key: metrics[side][key] for key in ("mean_usage", "collision_rate")} for side in metrics})
    )
    return tokenizer


if __name__ == "__main__":
    main(sys.argv[1:])
