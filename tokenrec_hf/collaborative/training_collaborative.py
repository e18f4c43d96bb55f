"""BPR training of a [`CollaborativeModel`] under the leave-one-out protocol, with early stopping and checkpoints.

Training uses the seen users' training interactions only. Every `eval_interval` epochs the model is scored on the
validation targets (history = training items). The epoch with the best validation metric is kept, and the test
targets (history = training items + validation item) are scored once, after training ends.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file
from tqdm.auto import tqdm
from transformers.utils import logging

from ..evaluation import evaluate_full_ranking
from ..utils.io import atomic_directory, atomic_write_json, load_json, save_safetensors_atomic
from .configuration_collaborative import CollaborativeConfig
from .modeling_collaborative import CollaborativeModel, InteractionGraph, build_interaction_graph, sample_negatives

logger = logging.get_logger(__name__)

CHECKPOINT_NAME = "checkpoint"
TRAINER_STATE_NAME = "trainer_state.json"
TRAINER_TENSORS_NAME = "trainer_tensors.safetensors"
OPTIMIZER_NAME = "optimizer.pt"


class InteractionSplit(Protocol):
    """The parts of `tokenrec_hf.data.InteractionData` that training reads."""

    user_ids: list[str]
    item_ids: list[str]
    train: list[list[int]]
    valid: list[int]
    test: list[int]
    unseen_users: list[int]

    @property
    def seen_users(self) -> list[int]: ...

    def train_pairs(self, include_unseen: bool = False) -> tuple[torch.Tensor, torch.Tensor]: ...


@dataclass
class CollaborativeTrainingArguments:
    """Settings of [`train_collaborative`]. The defaults reach the LastFM targets in docs/collaborative.md."""

    output_dir: str | None = field(
        default=None, metadata={"help": "Folder for the checkpoint, the training curve and the final model."}
    )
    num_epochs: int = field(default=1000, metadata={"help": "Maximum number of passes over the training pairs."})
    batch_size: int = field(default=2048, metadata={"help": "Training (user, positive, negative) triples per step."})
    learning_rate: float = field(default=5e-3, metadata={"help": "Adam learning rate."})
    reg_weight: float = field(
        default=1e-4, metadata={"help": "L2 weight on the batch's layer-0 embeddings, averaged over the batch."}
    )
    eval_interval: int = field(default=5, metadata={"help": "Epochs between validation evaluations."})
    patience: int = field(
        default=10, metadata={"help": "Evaluations without improvement of the selection metric before stopping."}
    )
    metric_for_best_model: str = field(default="ndcg@20", metadata={"help": "Validation metric used for selection."})
    ks: tuple[int, ...] = field(default=(10, 20, 30), metadata={"help": "Cut-offs of HR@K and NDCG@K."})
    eval_batch_size: int = field(default=4096, metadata={"help": "Users ranked at once during evaluation."})
    seed: int = field(default=42, metadata={"help": "Seed of initialization, shuffling and negative sampling."})
    fused: bool = field(
        default=True, metadata={"help": "Use the fused LightGCN propagation; False uses plain autograd on COO."}
    )
    save_checkpoints: bool = field(
        default=True, metadata={"help": "Save a resumable checkpoint after every evaluation (needs output_dir)."}
    )
    resume_from_checkpoint: str | bool | None = field(
        default=None, metadata={"help": "Checkpoint folder to resume from, or True for output_dir/checkpoint."}
    )
    evaluate_test: bool = field(default=True, metadata={"help": "Score the test targets once after training."})
    save_plot: bool = field(default=True, metadata={"help": "Save training_curve.png into output_dir."})
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bar."})

    def __post_init__(self) -> None:
        for name in ("num_epochs", "batch_size", "eval_interval", "patience", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        if self.learning_rate <= 0 or self.reg_weight < 0:
            raise ValueError(
                f"learning_rate={self.learning_rate!r} must be > 0 and reg_weight={self.reg_weight!r} must be >= 0."
            )
        self.ks = tuple(int(k) for k in self.ks)
        metric_names = [f"{name}@{k}" for name in ("hr", "ndcg") for k in self.ks]
        if self.metric_for_best_model not in metric_names:
            raise ValueError(f"metric_for_best_model={self.metric_for_best_model!r} is not one of {metric_names}.")


@dataclass
class CollaborativeTrainingResult:
    """Result of [`train_collaborative`].

    Attributes:
        model: The model at the best validation epoch, with propagated representations.
        best_epoch: Epoch (1-based) with the best validation metric.
        epochs_trained: Epochs run in total, including those before a resume.
        validation: Validation metrics at the best epoch.
        test: Test metrics of the selected model, scored once after training (empty when `evaluate_test=False`).
        history: One record per evaluation: epoch, mean loss and validation metrics.
        seconds_per_epoch: Mean wall time of the training epochs run in this call (evaluation excluded).
        stopped_early: Whether patience ran out before `num_epochs`.
    """

    model: CollaborativeModel
    best_epoch: int
    epochs_trained: int
    validation: dict[str, float]
    test: dict[str, float]
    history: list[dict[str, Any]]
    seconds_per_epoch: float
    stopped_early: bool


def evaluate_collaborative(
    model: CollaborativeModel,
    data: InteractionSplit,
    stage: str = "valid",
    *,
    ks: tuple[int, ...] = (10, 20, 30),
    users: list[int] | None = None,
    user_embeddings: torch.Tensor | None = None,
    batch_size: int = 4096,
) -> dict[str, float]:
    """Rank the whole catalog for `users` (default: the seen users) and return HR@K / NDCG@K for `stage`.

    Args:
        model: A trained model (LightGCN must be propagated).
        data: The split.
        stage: `"valid"` (history = training items) or `"test"` (history = training items + validation item).
        ks: Cut-offs.
        users: User indices to evaluate.
        user_embeddings: Embeddings of `users` to use instead of `model.user_representations` (for example folded
            in ones).
        batch_size: Users ranked at once.
    """
    if stage not in ("valid", "test"):
        raise ValueError(f"stage={stage!r} is invalid: pass 'valid' or 'test'.")
    users = list(data.seen_users) if users is None else list(users)
    if stage == "valid":
        histories = [data.train[user] for user in users]
        targets = [data.valid[user] for user in users]
    else:
        histories = [[*data.train[user], data.valid[user]] for user in users]
        targets = [data.test[user] for user in users]
    queries = model.user_representations[users] if user_embeddings is None else user_embeddings
    return evaluate_full_ranking(
        queries, model.item_representations, histories, targets, ks, similarity="dot", batch_size=batch_size
    )


def _check_data(model: CollaborativeModel, data: InteractionSplit) -> None:
    num_users, num_items = len(data.user_ids), len(data.item_ids)
    if (num_users, num_items) != (model.config.num_users, model.config.num_items):
        raise ValueError(
            f"The dataset has {num_users} users and {num_items} items but the model was built for "
            f"{model.config.num_users} and {model.config.num_items}; build the config from this dataset."
        )


def _training_state_tensors(model: CollaborativeModel, generator: torch.Generator, best: dict[str, torch.Tensor]):
    return {
        "user_embedding": model.user_embedding.weight.detach(),
        "item_embedding": model.item_embedding.weight.detach(),
        "best_user_embedding": best["user_embedding"],
        "best_item_embedding": best["item_embedding"],
        "generator_state": generator.get_state(),
    }


def _save_checkpoint(
    folder: Path,
    model: CollaborativeModel,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    best: dict[str, torch.Tensor],
    state: dict[str, Any],
) -> None:
    with atomic_directory(folder) as staging:
        save_safetensors_atomic(_training_state_tensors(model, generator, best), staging / TRAINER_TENSORS_NAME)
        torch.save(optimizer.state_dict(), staging / OPTIMIZER_NAME)
        # JSON has no infinity: an unset best metric is stored as null.
        finite_state = {**state, "best_metric": state["best_metric"] if math.isfinite(state["best_metric"]) else None}
        atomic_write_json(staging / TRAINER_STATE_NAME, finite_state)


def _load_checkpoint(
    folder: Path, model: CollaborativeModel, optimizer: torch.optim.Optimizer, generator: torch.Generator, expected
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    missing = [
        name for name in (TRAINER_STATE_NAME, TRAINER_TENSORS_NAME, OPTIMIZER_NAME) if not (folder / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"Checkpoint folder {folder} is missing {missing}; pass a folder written by train_collaborative, or "
            "start without resume_from_checkpoint."
        )
    state = load_json(folder / TRAINER_STATE_NAME, "trainer state")
    for key, value in expected.items():
        if state.get("setup", {}).get(key) != value:
            raise ValueError(
                f"Checkpoint {folder} was written with {key}={state.get('setup', {}).get(key)!r} but this run has "
                f"{key}={value!r}; resume with the same model and data, or start a new output_dir."
            )
    try:
        tensors = load_file(str(folder / TRAINER_TENSORS_NAME))
    except Exception as error:  # safetensors raises its own error types for corrupted files
        raise ValueError(f"{folder / TRAINER_TENSORS_NAME} is corrupted ({error}); delete the checkpoint.") from error

    with torch.no_grad():
        model.user_embedding.weight.copy_(tensors["user_embedding"])
        model.item_embedding.weight.copy_(tensors["item_embedding"])
    generator.set_state(tensors["generator_state"])
    optimizer.load_state_dict(torch.load(folder / OPTIMIZER_NAME, weights_only=True))
    best = {"user_embedding": tensors["best_user_embedding"], "item_embedding": tensors["best_item_embedding"]}
    return state, best


def _save_plot(history: list[dict[str, Any]], metric: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [record["epoch"] for record in history]
    figure, loss_axis = plt.subplots(figsize=(6, 4))
    loss_axis.plot(epochs, [record["loss"] for record in history], color="tab:blue", label="training loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("mean BPR loss", color="tab:blue")
    metric_axis = loss_axis.twinx()
    metric_axis.plot(epochs, [record[f"valid_{metric}"] for record in history], color="tab:orange")
    metric_axis.set_ylabel(f"validation {metric}", color="tab:orange")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def train_collaborative(
    model: CollaborativeModel | CollaborativeConfig,
    data: InteractionSplit,
    args: CollaborativeTrainingArguments | None = None,
) -> CollaborativeTrainingResult:
    """Train LightGCN or MF with BPR on the seen users' training interactions and select on validation.

    Each epoch visits every training pair once in a random order and pairs it with one negative item drawn uniformly
    outside that user's training items. A LightGCN step propagates the whole graph, as in LightGCN's reference code.

    Args:
        model: A model to continue training, or a config; a config builds a new model whose tables are drawn from
            a generator seeded with `args.seed`.
        data: The leave-one-out split (`tokenrec_hf.data.InteractionData`).
        args: Training settings.

    Returns:
        A [`CollaborativeTrainingResult`] whose model contains the best validation epoch's weights.

    Raises:
        ValueError: When the model and data sizes differ, a user has interacted with every item, or a checkpoint
            belongs to another setup.
    """
    args = args or CollaborativeTrainingArguments()
    generator = torch.Generator().manual_seed(args.seed)
    if isinstance(model, CollaborativeConfig):
        model = CollaborativeModel(model)
        model.reset_parameters(generator)
    _check_data(model, data)
    model.user_ids, model.item_ids = list(data.user_ids), list(data.item_ids)
    config = model.config

    # Training interactions of seen users only; unseen users stay out of the graph and the loss.
    users, items = data.train_pairs(include_unseen=False)
    if users.numel() == 0:
        raise ValueError("The dataset has no training interactions for seen users; nothing to train on.")
    graph = build_interaction_graph(
        users, items, config.num_users, config.num_items, layout="csr" if args.fused else "coo"
    )
    full_users = graph.user_degrees >= config.num_items
    if bool(full_users.any()):
        raise ValueError(f"User {int(full_users.nonzero()[0])} interacted with every item; BPR has no negatives.")
    observed_keys = torch.unique(users * config.num_items + items)

    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate)
    setup = {
        "architecture": config.architecture,
        "num_users": config.num_users,
        "num_items": config.num_items,
        "embedding_dim": config.embedding_dim,
        "num_layers": config.num_layers,
        "num_train_pairs": int(users.numel()),
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    state: dict[str, Any] = {
        "epoch": 0,
        "best_epoch": 0,
        "best_metric": -math.inf,
        "evaluations_without_improvement": 0,
        "history": [],
        "setup": setup,
        "args": {key: value for key, value in asdict(args).items() if key != "resume_from_checkpoint"},
    }
    best = {
        "user_embedding": model.user_embedding.weight.detach().clone(),
        "item_embedding": model.item_embedding.weight.detach().clone(),
    }

    output_dir = Path(args.output_dir) if args.output_dir else None
    if args.resume_from_checkpoint:
        if args.resume_from_checkpoint is True:
            if output_dir is None:
                raise ValueError("resume_from_checkpoint=True needs output_dir; or pass the checkpoint folder itself.")
            checkpoint = output_dir / CHECKPOINT_NAME
        else:
            checkpoint = Path(args.resume_from_checkpoint)
        state, best = _load_checkpoint(checkpoint, model, optimizer, generator, setup)
        state["best_metric"] = -math.inf if state["best_metric"] is None else state["best_metric"]
        logger.info(f"Resumed collaborative training from {checkpoint} at epoch {state['epoch']}.")

    metric = args.metric_for_best_model
    epoch_seconds: list[float] = []
    stopped_early = state["evaluations_without_improvement"] >= args.patience
    progress = tqdm(
        total=args.num_epochs, initial=state["epoch"], desc=f"{config.architecture} epochs", disable=args.disable_tqdm
    )
    while state["epoch"] < args.num_epochs and not stopped_early:
        # One pass over the training pairs.
        model.train()
        started = time.perf_counter()
        order = torch.randperm(users.numel(), generator=generator)
        total_loss, num_batches = 0.0, 0
        for start in range(0, users.numel(), args.batch_size):
            batch = order[start : start + args.batch_size]
            batch_users, batch_items = users[batch], items[batch]
            negatives = sample_negatives(batch_users, observed_keys, config.num_items, generator)
            output = model(
                batch_users,
                batch_items,
                negatives,
                graph=graph if model.is_lightgcn else None,
                reg_weight=args.reg_weight,
                fused=args.fused,
            )
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            optimizer.step()
            total_loss += float(output.loss.detach())
            num_batches += 1
        epoch_seconds.append(time.perf_counter() - started)
        state["epoch"] += 1
        mean_loss = total_loss / num_batches
        progress.update(1)
        progress.set_postfix(loss=f"{mean_loss:.4f}", best=f"{state['best_metric']:.4f}")

        if state["epoch"] % args.eval_interval and state["epoch"] < args.num_epochs:
            continue

        # Validation and model selection.
        model.eval()
        model.propagate(graph)
        validation = evaluate_collaborative(model, data, "valid", ks=args.ks, batch_size=args.eval_batch_size)
        state["history"].append(
            {
                "epoch": state["epoch"],
                "loss": mean_loss,
                **{f"valid_{key}": value for key, value in validation.items()},
            }
        )
        if validation[metric] > state["best_metric"]:
            state.update(best_metric=validation[metric], best_epoch=state["epoch"], evaluations_without_improvement=0)
            best = {
                "user_embedding": model.user_embedding.weight.detach().clone(),
                "item_embedding": model.item_embedding.weight.detach().clone(),
            }
        else:
            state["evaluations_without_improvement"] += 1
        stopped_early = state["evaluations_without_improvement"] >= args.patience
        progress.set_postfix(loss=f"{mean_loss:.4f}", best=f"{state['best_metric']:.4f}")
        if output_dir is not None and args.save_checkpoints:
            _save_checkpoint(output_dir / CHECKPOINT_NAME, model, optimizer, generator, best, state)
    progress.close()

    # Restore the selected epoch and score the test targets once.
    with torch.no_grad():
        model.user_embedding.weight.copy_(best["user_embedding"])
        model.item_embedding.weight.copy_(best["item_embedding"])
    model.eval()
    model.propagate(graph)
    validation = evaluate_collaborative(model, data, "valid", ks=args.ks, batch_size=args.eval_batch_size)
    test = (
        evaluate_collaborative(model, data, "test", ks=args.ks, batch_size=args.eval_batch_size)
        if args.evaluate_test
        else {}
    )

    if output_dir is not None:
        output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(
            output_dir / "training_results.json",
            {"best_epoch": state["best_epoch"], "validation": validation, "test": test, "history": state["history"]},
        )
        if args.save_plot and state["history"]:
            _save_plot(state["history"], metric, output_dir / "training_curve.png")

    return CollaborativeTrainingResult(
        model=model,
        best_epoch=state["best_epoch"],
        epochs_trained=state["epoch"],
        validation=validation,
        test=test,
        history=state["history"],
        seconds_per_epoch=sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else float("nan"),
        stopped_early=stopped_early,
    )


def build_graph_for(data: InteractionSplit, layout: str = "csr") -> InteractionGraph:
    """Build the training graph of `data` (seen users' training interactions), as used by `train_collaborative`."""
    users, items = data.train_pairs(include_unseen=False)
    return build_interaction_graph(users, items, len(data.user_ids), len(data.item_ids), layout=layout)


__all__ = [
    "CollaborativeTrainingArguments",
    "CollaborativeTrainingResult",
    "build_graph_for",
    "evaluate_collaborative",
    "train_collaborative",
]
