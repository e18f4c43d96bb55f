"""Training loop for MQ-Tokenizers: AdamW, validation split, early stopping, dead-codeword restarts, checkpoints."""

from __future__ import annotations

import copy
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers.utils import logging

from ..utils.io import atomic_directory, atomic_write_json, load_json, save_safetensors_atomic
from .configuration_mq_tokenizer import MQTokenizerConfig
from .metrics import codebook_metrics
from .modeling_mq_tokenizer import MQTokenizer

logger = logging.get_logger(__name__)

CHECKPOINT_PREFIX = "checkpoint-epoch-"
TRAINER_STATE_NAME = "trainer_state.json"
TRAINER_TENSORS_NAME = "trainer_state.safetensors"
OPTIMIZER_STATE_NAME = "optimizer.safetensors"
OPTIMIZER_GROUPS_NAME = "optimizer.json"


@dataclass
class MQTokenizerTrainingArguments:
    """Settings of [`train_mq_tokenizer`]."""

    output_dir: str | None = field(
        default=None, metadata={"help": "Folder for resumable checkpoints. No checkpoints are written when unset."}
    )
    num_train_epochs: int = field(default=400, metadata={"help": "Maximum number of passes over the training rows."})
    train_batch_size: int = field(default=256, metadata={"help": "Embeddings per optimization step."})
    eval_batch_size: int = field(default=8192, metadata={"help": "Embeddings per forward pass in evaluation."})
    learning_rate: float = field(default=5e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float | None = field(
        default=None, metadata={"help": "Clip the gradient norm to this value; no clipping when unset."}
    )
    validation_fraction: float = field(
        default=0.1,
        metadata={
            "help": "Share of the embeddings held out for early stopping, in [0, 0.5]. 0 monitors training loss."
        },
    )
    early_stopping_patience: int | None = field(
        default=40,
        metadata={
            "help": "Stop after this many epochs without a lower validation reconstruction error; unset: never."
        },
    )
    seed: int = field(default=42, metadata={"help": "Seed for the split, the shuffling, the masks and k-means."})
    kmeans_init: bool = field(
        default=True, metadata={"help": "Initialize codebooks by k-means on the encoder outputs before training."}
    )
    kmeans_iterations: int = field(default=25, metadata={"help": "Lloyd iterations of the k-means initialization."})
    kmeans_sample_size: int = field(
        default=20000, metadata={"help": "Training embeddings sampled for the k-means initialization."}
    )
    dead_codeword_restart: bool = field(
        default=True,
        metadata={"help": "Re-seed codewords unused for `dead_codeword_patience` steps from current encoder outputs."},
    )
    dead_codeword_patience: int = field(
        default=50, metadata={"help": "Training steps without any use after which a codeword counts as dead."}
    )
    dead_codeword_restart_fraction: float = field(
        default=0.75,
        metadata={
            "help": "Restart dead codewords only during this leading share of num_train_epochs, so the last epochs "
            "can settle. In (0, 1]."
        },
    )
    save_every_epochs: int = field(
        default=0, metadata={"help": "Write a checkpoint every this many epochs (needs output_dir); 0 disables."}
    )
    save_total_limit: int | None = field(default=2, metadata={"help": "Keep at most this many checkpoints."})
    resume_from_checkpoint: str | bool | None = field(
        default=None, metadata={"help": "A checkpoint folder, or True for the latest one in output_dir."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bar."})
    warn_on_collapse: bool = field(
        default=True, metadata={"help": "Log a warning when a trained codebook uses under 10% of its codewords."}
    )

    def __post_init__(self) -> None:
        positive = ("num_train_epochs", "train_batch_size", "eval_batch_size", "kmeans_sample_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate!r}.")
        if not 0.0 <= self.validation_fraction <= 0.5:
            raise ValueError(f"validation_fraction must be in [0, 0.5], got {self.validation_fraction!r}.")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            raise ValueError(
                f"early_stopping_patience must be a positive integer or None, got {self.early_stopping_patience!r}."
            )
        if self.dead_codeword_patience < 1:
            raise ValueError(
                f"dead_codeword_patience must be a positive integer, got {self.dead_codeword_patience!r}."
            )
        if not 0.0 < self.dead_codeword_restart_fraction <= 1.0:
            raise ValueError(
                f"dead_codeword_restart_fraction must be in (0, 1], got {self.dead_codeword_restart_fraction!r}."
            )
        if self.save_every_epochs < 0:
            raise ValueError(f"save_every_epochs must be >= 0, got {self.save_every_epochs!r}.")
        if self.save_every_epochs and self.output_dir is None:
            raise ValueError("save_every_epochs is set but output_dir is not; pass output_dir for the checkpoints.")
        if self.resume_from_checkpoint is True and self.output_dir is None:
            raise ValueError("resume_from_checkpoint=True needs output_dir to find the latest checkpoint.")


@dataclass
class MQTokenizerTrainingResult:
    """Outcome of [`train_mq_tokenizer`] besides the trained model.

    Args:
        history: One dict per epoch with the mean training losses, the validation reconstruction loss, codebook
            metrics of all embeddings, restarted codewords and the elapsed seconds.
        best_epoch: The epoch (1-based) whose weights were kept.
        best_validation_loss: The monitored reconstruction loss at `best_epoch`.
        stopped_early: Whether early stopping ended training before `num_train_epochs`.
        train_runtime: Wall-clock seconds of the call.
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_validation_loss: float
    stopped_early: bool
    train_runtime: float


def _split_indices(num_rows: int, fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    permutation = torch.randperm(num_rows, generator=generator)
    num_valid = int(round(num_rows * fraction)) if fraction > 0 else 0
    if fraction > 0 and num_valid == 0 and num_rows > 1:
        num_valid = 1
    if num_rows - num_valid < 1:
        raise ValueError(
            f"Got {num_rows} embeddings; at least one must remain for training after the validation split "
            f"(validation_fraction={fraction}). Pass more embeddings or set validation_fraction=0."
        )
    return permutation[num_valid:].sort().values, permutation[:num_valid].sort().values


@torch.no_grad()
def _validation_reconstruction_loss(model: MQTokenizer, embeddings: torch.Tensor, batch_size: int) -> float:
    model.eval()
    total = 0.0
    for start in range(0, embeddings.shape[0], batch_size):
        batch = embeddings[start : start + batch_size]
        total += float(model(batch).reconstruction_loss) * batch.shape[0]
    return total / embeddings.shape[0]


@torch.no_grad()
def _restart_dead_codewords(
    model: MQTokenizer,
    optimizer: torch.optim.Optimizer,
    steps_since_use: torch.Tensor,
    quantized_inputs: torch.Tensor,
    patience: int,
    generator: torch.Generator,
) -> int:
    """Re-seed codewords unused for `patience` steps with random vectors that their codebook quantized this step."""
    restarted = 0
    state = optimizer.state.get(model.codebooks, {})
    for k in range(steps_since_use.shape[0]):
        dead = (steps_since_use[k] >= patience).nonzero().flatten()
        if len(dead) == 0:
            continue
        candidates = quantized_inputs[:, k]
        rows = torch.randint(candidates.shape[0], (len(dead),), generator=generator)
        noise = torch.randn(len(dead), candidates.shape[1], generator=generator) * 1e-3
        model.reset_codewords(k, dead.to(model.codebooks.device), candidates[rows] + noise.to(candidates.device))
        for moment in ("exp_avg", "exp_avg_sq"):
            if moment in state:
                state[moment][k, dead] = 0.0
        steps_since_use[k, dead] = 0
        restarted += len(dead)
    return restarted


def _find_latest_checkpoint(output_dir: str | os.PathLike) -> Path:
    folder = Path(output_dir)
    checkpoints = sorted(
        (path for path in folder.glob(f"{CHECKPOINT_PREFIX}*") if re.fullmatch(rf"{CHECKPOINT_PREFIX}\d+", path.name)),
        key=lambda path: int(path.name[len(CHECKPOINT_PREFIX) :]),
    )
    if not checkpoints:
        raise FileNotFoundError(
            f"resume_from_checkpoint=True but {folder} contains no {CHECKPOINT_PREFIX}<epoch> folder. Train with "
            "save_every_epochs > 0 first, or pass resume_from_checkpoint=None to start from scratch."
        )
    return checkpoints[-1]


def _save_checkpoint(
    output_dir: str,
    epoch: int,
    model: MQTokenizer,
    optimizer: torch.optim.Optimizer,
    state: dict,
    tensors: dict,
    save_total_limit: int | None,
) -> Path:
    target = Path(output_dir) / f"{CHECKPOINT_PREFIX}{epoch}"
    with atomic_directory(target) as staging:
        model.save_pretrained(staging / "model")

        optimizer_state = optimizer.state_dict()
        optimizer_tensors = {
            f"state.{index}.{name}": value
            for index, values in optimizer_state["state"].items()
            for name, value in values.items()
        }
        save_safetensors_atomic(optimizer_tensors, staging / OPTIMIZER_STATE_NAME)
        atomic_write_json(staging / OPTIMIZER_GROUPS_NAME, optimizer_state["param_groups"])
        save_safetensors_atomic(tensors, staging / TRAINER_TENSORS_NAME)
        atomic_write_json(staging / TRAINER_STATE_NAME, state)

    if save_total_limit is not None:
        checkpoints = sorted(
            Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*"), key=lambda path: int(path.name[len(CHECKPOINT_PREFIX) :])
        )
        for stale in checkpoints[: max(len(checkpoints) - save_total_limit, 0)]:
            if stale != target:
                shutil.rmtree(stale, ignore_errors=True)
    return target


def _load_checkpoint(checkpoint: Path, model: MQTokenizer, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    state = load_json(checkpoint / TRAINER_STATE_NAME, "MQ-Tokenizer trainer state")
    saved_config = load_json(checkpoint / "model" / "config.json", "MQ-Tokenizer checkpoint config")
    for name in ("input_dim", "num_codebooks", "codebook_size", "codebook_dim", "quantizer"):
        if saved_config.get(name) != getattr(model.config, name):
            raise ValueError(
                f"Checkpoint {checkpoint} has {name}={saved_config.get(name)!r} but the model being trained has "
                f"{name}={getattr(model.config, name)!r}. Resume with the same configuration, or start from scratch "
                "with resume_from_checkpoint=None."
            )

    weights = load_file(str(checkpoint / "model" / "model.safetensors"))
    model.load_state_dict(weights, strict=True)

    optimizer_tensors = load_file(str(checkpoint / OPTIMIZER_STATE_NAME))
    optimizer_state: dict[str, Any] = {"state": {}, "param_groups": load_json(checkpoint / OPTIMIZER_GROUPS_NAME)}
    for key, value in optimizer_tensors.items():
        _, index, name = key.split(".", 2)
        optimizer_state["state"].setdefault(int(index), {})[name] = value
    optimizer.load_state_dict(optimizer_state)

    tensors = load_file(str(checkpoint / TRAINER_TENSORS_NAME))
    return state, tensors


def _build_model(config_or_model: MQTokenizer | MQTokenizerConfig | dict) -> MQTokenizer:
    if isinstance(config_or_model, MQTokenizer):
        return config_or_model
    if isinstance(config_or_model, dict):
        config_or_model = MQTokenizerConfig(**config_or_model)
    if isinstance(config_or_model, MQTokenizerConfig):
        return MQTokenizer(config_or_model)
    raise TypeError(
        f"config_or_model must be an MQTokenizer, an MQTokenizerConfig or a dict of config fields, got "
        f"{type(config_or_model).__name__}."
    )


def train_mq_tokenizer(
    embeddings: torch.Tensor,
    config_or_model: MQTokenizer | MQTokenizerConfig | dict,
    args: MQTokenizerTrainingArguments | None = None,
) -> tuple[MQTokenizer, MQTokenizerTrainingResult]:
    r"""
    Train an MQ-Tokenizer on user or item embeddings and return the weights with the lowest validation error.

    The rows are split into training and validation sets (`args.validation_fraction`). A fresh model stores the
    standardization statistics of the training rows and initializes its codebooks by k-means on the encoder outputs.
    Each step draws new masks, minimizes the MQ-Tokenizer loss with AdamW, and re-seeds codewords that no row has used
    for `args.dead_codeword_patience` steps. Each epoch ends with the validation reconstruction loss (no masking),
    which drives early stopping, and codebook metrics over all rows.

    Args:
        embeddings (`torch.Tensor` of shape `(N, input_dim)`):
            The collaborative embeddings to tokenize, training rows only (never test data).
        config_or_model ([`MQTokenizerConfig`], [`MQTokenizer`] or `dict`):
            A configuration (a new model is built) or a model to continue training.
        args ([`MQTokenizerTrainingArguments`], *optional*):
            Training settings; the defaults when omitted.

    Returns:
        `tuple[MQTokenizer, MQTokenizerTrainingResult]`: the model in eval mode with its best weights, and the
        per-epoch history.

    Raises:
        ValueError: On embeddings of the wrong width or with NaN/inf rows, too few rows, or a checkpoint made for
            another configuration.
    """
    args = args if args is not None else MQTokenizerTrainingArguments()
    start_time = time.perf_counter()
    # Seed before building the model, so that a config yields the same initial weights for the same seed.
    torch.manual_seed(args.seed)
    model = _build_model(config_or_model)
    embeddings = model._check_embeddings(embeddings)
    num_codebooks, codebook_size = model.config.num_codebooks, model.config.codebook_size

    generator = torch.Generator().manual_seed(args.seed)
    train_index, valid_index = _split_indices(embeddings.shape[0], args.validation_fraction, generator)
    train_rows, valid_rows = embeddings[train_index], embeddings[valid_index]

    # Standardization statistics and k-means codebooks come from the training rows of a fresh model.
    if not bool(model.codebooks_initialized):
        model.set_input_statistics(train_rows)
        if args.kmeans_init:
            sample = torch.randperm(train_rows.shape[0], generator=generator)[: args.kmeans_sample_size]
            model.initialize_codebooks(train_rows[sample], args.kmeans_iterations, generator)
        model.codebooks_initialized.fill_(True)

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    steps_since_use = torch.zeros(num_codebooks, codebook_size, dtype=torch.long)
    history: list[dict[str, Any]] = []
    start_epoch, global_step, epochs_without_improvement = 0, 0, 0
    best_loss, best_epoch = math.inf, 0
    best_state = copy.deepcopy(model.state_dict())

    if args.resume_from_checkpoint:
        checkpoint = (
            _find_latest_checkpoint(args.output_dir)
            if args.resume_from_checkpoint is True
            else Path(args.resume_from_checkpoint)
        )
        state, tensors = _load_checkpoint(checkpoint, model, optimizer)
        start_epoch, global_step = state["epoch"], state["global_step"]
        epochs_without_improvement, history = state["epochs_without_improvement"], state["history"]
        best_loss, best_epoch = state["best_loss"], state["best_epoch"]
        steps_since_use = tensors["steps_since_use"]
        best_state = {name[len("best.") :]: value for name, value in tensors.items() if name.startswith("best.")}
        torch.set_rng_state(tensors["torch_rng_state"])
        generator.set_state(tensors["generator_state"])
        logger.info(f"Resumed MQ-Tokenizer training from {checkpoint} at epoch {start_epoch}.")

    restart_until_epoch = int(math.ceil(args.num_train_epochs * args.dead_codeword_restart_fraction))
    num_batches = math.ceil(train_rows.shape[0] / args.train_batch_size)
    progress = tqdm(
        total=args.num_train_epochs, initial=start_epoch, desc="MQ-Tokenizer", unit="epoch", disable=args.disable_tqdm
    )
    stopped_early = False

    for epoch in range(start_epoch, args.num_train_epochs):
        model.train()
        sums = {"loss": 0.0, "reconstruction_loss": 0.0, "codebook_loss": 0.0, "commitment_loss": 0.0}
        restarted = 0
        order = torch.randperm(train_rows.shape[0], generator=generator)

        for start in range(0, train_rows.shape[0], args.train_batch_size):
            batch = train_rows[order[start : start + args.train_batch_size]]
            output = model(batch)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            if args.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
            optimizer.step()
            global_step += 1

            for name in sums:
                sums[name] += float(getattr(output, name).detach())

            # Track when each codeword was last chosen, and restart the ones unused for too long.
            steps_since_use += 1
            for k in range(num_codebooks):
                steps_since_use[k, output.codes[:, k].cpu()] = 0
            if args.dead_codeword_restart and epoch < restart_until_epoch:
                restarted += _restart_dead_codewords(
                    model,
                    optimizer,
                    steps_since_use,
                    output.encoder_outputs.detach(),
                    args.dead_codeword_patience,
                    generator,
                )

        # Epoch end: validation reconstruction, codebook health, early stopping.
        record: dict[str, Any] = {"epoch": epoch + 1, "step": global_step}
        record.update({f"train_{name}": value / num_batches for name, value in sums.items()})
        if valid_rows.shape[0] > 0:
            record["validation_reconstruction_loss"] = _validation_reconstruction_loss(
                model, valid_rows, args.eval_batch_size
            )
            monitored = record["validation_reconstruction_loss"]
        else:
            monitored = record["train_reconstruction_loss"]
        metrics = codebook_metrics(model.encode(embeddings, args.eval_batch_size), codebook_size)
        record.update(
            {
                "usage": metrics["usage"],
                "min_usage": metrics["min_usage"],
                "perplexity": metrics["perplexity"],
                "collision_rate": metrics["collision_rate"],
                "restarted_codewords": restarted,
                "elapsed_seconds": time.perf_counter() - start_time,
            }
        )
        history.append(record)

        if monitored < best_loss:
            best_loss, best_epoch, epochs_without_improvement = monitored, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            epochs_without_improvement += 1

        progress.update(1)
        progress.set_postfix(
            recon=f"{monitored:.4f}", usage=f"{metrics['min_usage']:.2f}", collide=f"{metrics['collision_rate']:.3f}"
        )

        if args.save_every_epochs and (epoch + 1) % args.save_every_epochs == 0:
            state = {
                "epoch": epoch + 1,
                "global_step": global_step,
                "epochs_without_improvement": epochs_without_improvement,
                "best_loss": best_loss,
                "best_epoch": best_epoch,
                "history": history,
                "args": {name: value for name, value in asdict(args).items() if name != "resume_from_checkpoint"},
            }
            tensors = {
                "steps_since_use": steps_since_use,
                "torch_rng_state": torch.get_rng_state(),
                "generator_state": generator.get_state(),
                **{f"best.{name}": value for name, value in best_state.items()},
            }
            _save_checkpoint(args.output_dir, epoch + 1, model, optimizer, state, tensors, args.save_total_limit)

        if args.early_stopping_patience is not None and epochs_without_improvement >= args.early_stopping_patience:
            stopped_early = True
            break

    progress.close()
    model.load_state_dict(best_state)
    model.eval()
    if args.warn_on_collapse:
        _warn_on_collapsed_codebooks(model.encode(embeddings, args.eval_batch_size), codebook_size, args.learning_rate)
    result = MQTokenizerTrainingResult(
        history=history,
        best_epoch=best_epoch,
        best_validation_loss=best_loss,
        stopped_early=stopped_early,
        train_runtime=time.perf_counter() - start_time,
    )
    return model, result


# A codebook that uses fewer codewords than this share carries almost no information.
# NOTE: the collapses seen so far came from dying ReLUs, so the encoders output nearly a constant. After one epoch at
# learning rate 5e-3 on a converged ML1M LightGCN user table, 76-92% of the units in the encoders' second and third
# hidden layers were zero for every user (6-20% at 1e-3). On a Beauty item table the share was 77-98% after three
# epochs. `tokenrec run` retrains a collapsed tokenizer at a lower learning rate (`--mq_collapse_retries`), and this
# module only finds the collapse. `dead_unit_fractions` measures the dead units.
COLLAPSED_USAGE = 0.1


def collapsed_codebooks(codes: torch.Tensor, codebook_size: int) -> dict[int, float]:
    """Return `{codebook index: usage}` for every codebook whose codes use less than `COLLAPSED_USAGE` of it."""
    usage = codebook_metrics(codes, codebook_size)["usage"]
    return {index: value for index, value in enumerate(usage) if value < COLLAPSED_USAGE}


def _warn_on_collapsed_codebooks(codes: torch.Tensor, codebook_size: int, learning_rate: float) -> None:
    """Log a warning for every codebook whose codes use less than `COLLAPSED_USAGE` of its codewords."""
    collapsed = collapsed_codebooks(codes, codebook_size)
    if not collapsed:
        return
    collision_rate = codebook_metrics(codes, codebook_size)["collision_rate"]
    for index, usage in collapsed.items():
        logger.warning(
            f"Codebook {index} of the trained MQ-Tokenizer uses {usage:.1%} of its {codebook_size} codewords, so it "
            f"has collapsed and {collision_rate:.1%} of the entities share their whole code. This happens when the "
            f"encoder's ReLU units die early in training. Train again with a lower learning rate than "
            f"{learning_rate:g} (for example {learning_rate / 5:g})."
        )


__all__ = ["MQTokenizerTrainingArguments", "MQTokenizerTrainingResult", "train_mq_tokenizer"]
