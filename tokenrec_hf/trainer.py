"""[`TokenRecTrainer`]: fine-tunes a TokenRec backbone for generative retrieval with the Hugging Face `Trainer`.

Training minimizes the cosine margin loss of the TokenRec paper (Qu et al.), which the model computes. The loss is
`1 - cos(z, q+)` for the positive item and `max(0, cos(z, q-) - margin)` for each negative item. Here `z` is the
projected query of the prompt and `q` a collaborative item representation. Evaluation ranks the whole catalog for
every validation user by the cosine between `z` and the model's item table, with the user's history scored minus
infinity, and reports HR@K and NDCG@K. The best checkpoint is selected on the validation targets; the test targets are scored once, by
[`TokenRecTrainer.evaluate_test`], after training.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PredictionOutput, speed_metrics
from transformers.utils import logging

from .data_collator import (
    EpochSeededRandomSampler,
    TokenRecDataCollator,
    TokenRecEvaluationDataset,
    TokenRecTrainingDataset,
)
from .evaluation import evaluate_full_ranking
from .training_args import TokenRecTrainingArguments

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from .data import InteractionData
    from .tokenization_tokenrec import TokenRecTokenizer

logger = logging.get_logger(__name__)

__all__ = ["TokenRecTrainer", "TrainingCurvesCallback", "plot_training_curves"]

LOSS_PART_NAMES = ("positive_loss", "negative_loss")
TRAINING_CURVES_FILE = "training_curves.png"


class TokenRecTrainer(Trainer):
    """A [`~transformers.Trainer`] for [`TokenRecForRetrieval`] with full-ranking evaluation.

    Args:
        model: The [`TokenRecForRetrieval`] to train. Its `item_embeddings` buffer is the retrieval table.
        args: The [`TokenRecTrainingArguments`]. Plain [`~transformers.TrainingArguments`] are accepted and get the
            TokenRec defaults for the options they lack.
        data: The leave-one-out split. When given, it provides the default training examples (see
            `args.example_sampling`), the validation rows and the test rows.
        processing_class: The [`TokenRecTokenizer`] that renders prompts. Required unless `data_collator` is given
            and evaluation is never run.
        data_collator: Defaults to a [`TokenRecDataCollator`] built from `args`.
        train_dataset: Defaults to a [`TokenRecTrainingDataset`] over `data`.
        eval_dataset: Validation rows (`user_index`, `history`, `target`). Defaults to the validation split of `data`.
        test_dataset: Test rows. Defaults to the test split of `data`. Only [`evaluate_test`] and [`predict`] read it.
        **kwargs: Passed on to [`~transformers.Trainer`].

    Example:

    ```python
    >>> trainer = TokenRecTrainer(model=model, args=args, data=data, processing_class=tokenizer)
    >>> trainer.train()
    >>> trainer.evaluate()  # validation: eval_hr@10, eval_ndcg@20, ...
    >>> trainer.evaluate_test()  # test, once, after training: test_hr@10, ...
    ```
    """

    def __init__(
        self,
        model: torch.nn.Module | None = None,
        args: TrainingArguments | None = None,
        data: InteractionData | None = None,
        processing_class: TokenRecTokenizer | None = None,
        data_collator: TokenRecDataCollator | None = None,
        train_dataset: Dataset | None = None,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        test_dataset: Dataset | None = None,
        callbacks: list[TrainerCallback] | None = None,
        **kwargs: Any,
    ) -> None:
        if args is None:
            args = TokenRecTrainingArguments(output_dir="tokenrec_trainer_output")
        check_components(model, processing_class, data)
        self.data = data
        data_seed = args.data_seed if args.data_seed is not None else args.seed

        if train_dataset is None and data is not None:
            train_dataset = TokenRecTrainingDataset(
                data, example_sampling=_arg(args, "example_sampling"), seed=data_seed
            )
        if eval_dataset is None and data is not None:
            eval_dataset = TokenRecEvaluationDataset(data, stage="valid")
        if test_dataset is None and data is not None:
            test_dataset = TokenRecEvaluationDataset(data, stage="test")
        self.test_dataset = test_dataset

        if data_collator is None:
            if processing_class is None:
                raise ValueError(
                    "TokenRecTrainer needs a TokenRecTokenizer to build prompts: pass processing_class=tokenizer "
                    "(or a ready data_collator)."
                )
            data_collator = TokenRecDataCollator(
                processing_class,
                num_negatives=_arg(args, "num_negatives"),
                shuffle_history=_arg(args, "shuffle_history"),
                max_length=_arg(args, "max_length"),
                max_history_tokens=_arg(args, "max_history_tokens"),
                pad_to_multiple_of=_arg(args, "pad_to_multiple_of"),
                seed=data_seed,
            )
        if getattr(args, "remove_unused_columns", False):
            logger.warning(
                "remove_unused_columns=True would drop the user_index, history and target columns that the TokenRec "
                "collator needs; TokenRecTrainer sets it to False."
            )
            args.remove_unused_columns = False

        callbacks = list(callbacks or [])
        callbacks.append(_EpochSeedCallback(self))
        if _arg(args, "plot_training_curves"):
            callbacks.append(TrainingCurvesCallback())

        super().__init__(
            model=model,
            args=args,
            data_collator=data_collator,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=processing_class,
            callbacks=callbacks,
            **kwargs,
        )
        self._loss_parts: dict[str, list[float]] = defaultdict(list)
        self._epoch_sampler: EpochSeededRandomSampler | None = None
        self._in_training = False
        self._test_scored = False

    # ---- Training ----

    def train(self, *args: Any, **kwargs: Any):
        """Run [`~transformers.Trainer.train`]; see its documentation. Warns when the test split was already scored."""
        if self._test_scored:
            logger.warning(
                "The test split was already scored by this trainer; training further and scoring test again makes "
                "the test result a model-selection signal. Select models on the validation split only."
            )
        self._in_training = True
        try:
            return super().train(*args, **kwargs)
        finally:
            self._in_training = False

    def _get_train_sampler(self, train_dataset: Dataset | None = None) -> torch.utils.data.Sampler | None:
        train_dataset = train_dataset if train_dataset is not None else self.train_dataset
        if not isinstance(train_dataset, TokenRecTrainingDataset):
            return super()._get_train_sampler(train_dataset)

        seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
        strategy = getattr(self.args, "train_sampling_strategy", "random")
        if strategy not in ("random", "sequential", "group_by_length"):
            raise ValueError(
                f"train_sampling_strategy={strategy!r} is not supported with TokenRecTrainingDataset; use 'random', "
                "'sequential' or 'group_by_length'."
            )
        length_fn = None
        megabatch_size = 1
        if strategy == "group_by_length":
            if not isinstance(self.data_collator, TokenRecDataCollator):
                raise ValueError(
                    "train_sampling_strategy='group_by_length' needs a TokenRecDataCollator to measure prompt "
                    f"lengths, got {type(self.data_collator).__name__}; use 'random' with a custom collator."
                )
            collator = self.data_collator

            def length_fn(epoch: int) -> list[int]:
                return [collator.prompt_length(train_dataset[(epoch, index)]) for index in range(len(train_dataset))]

            # The megabatch spans 50 optimizer steps, as in transformers' LengthGroupedSampler.
            megabatch_size = 50 * self.args.train_batch_size * self.args.gradient_accumulation_steps
        self._epoch_sampler = EpochSeededRandomSampler(
            len(train_dataset),
            seed=seed,
            shuffle=strategy != "sequential",
            length_fn=length_fn,
            megabatch_size=max(megabatch_size, 1),
        )
        return self._epoch_sampler

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """Drop T5's tied embedding keys from the missing keys before warning, since checkpoints store only `shared`."""
        tied = set(getattr(self.model, "_tied_weights_keys", None) or {})
        missing = [key for key in load_result.missing_keys if key not in tied]
        if missing:
            logger.warning(f"There were missing keys in the checkpoint model loaded: {missing}.")
        if load_result.unexpected_keys:
            logger.warning(
                f"There were unexpected keys in the checkpoint model loaded: {load_result.unexpected_keys}."
            )
        self.model.tie_weights()

    def _set_epoch(self, epoch: int) -> None:
        """Make the sampler, the training examples and the collator draw this epoch's randomness."""
        for component in (self._epoch_sampler, self.train_dataset, self.data_collator):
            if component is not None and hasattr(component, "set_epoch"):
                component.set_epoch(epoch)

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """Compute the retrieval loss with the model and record its positive and negative parts for logging.

        Each part is averaged across processes (gather, then mean) and later averaged over the steps since the
        last log, so the logged `positive_loss` and `negative_loss` describe the same batches as `loss`.
        """
        if "positive_item_ids" not in inputs:
            raise ValueError(
                f"The training batch has no 'positive_item_ids' (keys: {sorted(inputs)}); the training examples need "
                "a 'target' column."
            )
        outputs = model(**inputs)
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs[0]

        if model.training:
            for name in LOSS_PART_NAMES:
                part = outputs.get(name) if isinstance(outputs, dict) else getattr(outputs, name, None)
                if part is not None:
                    gathered = self.accelerator.gather(part.detach().float().reshape(1))
                    self._loss_parts[name].append(gathered.mean().item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the averaged loss parts to training logs, then log as [`~transformers.Trainer.log`] does."""
        if "loss" in logs and self._loss_parts:
            for name, values in self._loss_parts.items():
                if values:
                    logs[name] = sum(values) / len(values)
            self._loss_parts.clear()
        super().log(logs, start_time)

    # ---- Evaluation ----

    def evaluate(
        self,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        """Rank the whole catalog for every validation row and return HR@K and NDCG@K.

        Args:
            eval_dataset: Rows with `user_index`, `history` (items scored minus infinity) and `target`. Defaults to
                the trainer's validation rows. A dict evaluates each dataset with its name in the prefix.
            ignore_keys: Unused; kept for compatibility with [`~transformers.Trainer.evaluate`].
            metric_key_prefix: Prefix of the metric names.

        Returns:
            `{"eval_hr@10": ..., "eval_ndcg@10": ..., ..., "eval_runtime": ..., "eval_samples_per_second": ...}`.
        """
        eval_dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(eval_dataset, dict):
            metrics = {}
            for name, dataset in eval_dataset.items():
                metrics.update(self.evaluate(dataset, ignore_keys, metric_key_prefix=f"{metric_key_prefix}_{name}"))
            return metrics
        if eval_dataset is None:
            raise ValueError("TokenRecTrainer.evaluate needs validation rows: pass data= or eval_dataset=.")

        self._memory_tracker.start()
        _, _, metrics = self._rank_dataset(eval_dataset, metric_key_prefix, description="Validation")
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        self._memory_tracker.stop_and_update_metrics(metrics)
        return metrics

    def evaluate_test(self, test_dataset: Dataset | None = None, metric_key_prefix: str = "test") -> dict[str, float]:
        """Score the test rows once, after training, and return `test_hr@K` and `test_ndcg@K`.

        Raises:
            RuntimeError: When called during training (for example from a callback): the test targets must not
                influence training or model selection.
            ValueError: When there are no test rows.
        """
        return self.predict(test_dataset, metric_key_prefix=metric_key_prefix).metrics

    def predict(
        self,
        test_dataset: Dataset | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "test",
    ) -> PredictionOutput:
        """Compute the query embeddings of the test rows and their full-ranking metrics.

        Args:
            test_dataset: Rows with `user_index`, `history` and `target`. Defaults to the test split of `data`.
            ignore_keys: Unused; kept for compatibility with [`~transformers.Trainer.predict`].
            metric_key_prefix: Prefix of the metric names.

        Returns:
            A [`~transformers.trainer_utils.PredictionOutput`] whose `predictions` are the `[N, d]` query embeddings,
            `label_ids` the `[N]` target items and `metrics` the HR@K / NDCG@K values.

        Raises:
            RuntimeError: When called during training.
            ValueError: When there are no test rows.
        """
        if self._in_training:
            raise RuntimeError(
                "The test split cannot be scored during training: validation selects the model, and the test targets "
                "are scored once at the end. Call evaluate_test() after train() returns."
            )
        test_dataset = test_dataset if test_dataset is not None else self.test_dataset
        if test_dataset is None:
            raise ValueError("There are no test rows: pass data= to TokenRecTrainer or test_dataset= here.")

        queries, targets, metrics = self._rank_dataset(test_dataset, metric_key_prefix, description="Test")
        self._test_scored = True
        self.log(metrics)
        return PredictionOutput(predictions=queries.numpy(), label_ids=targets.numpy(), metrics=metrics)

    def _rank_dataset(
        self, dataset: Dataset, metric_key_prefix: str, description: str
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """Embed every row's prompt, gather the queries from all processes and compute the ranking metrics."""
        start_time = time.time()
        collator = self._evaluation_collator()

        # Rows of similar prompt length share a batch, which cuts the padding of history prompts.
        # The gathered row indices restore the dataset order below, so the metrics do not depend on this order.
        lengths = [collator.prompt_length(dataset[index]) for index in range(len(dataset))]
        length_order = sorted(range(len(dataset)), key=lengths.__getitem__)
        dataloader = DataLoader(
            _IndexedRows(dataset),
            batch_size=self.args.eval_batch_size,
            sampler=length_order,
            collate_fn=_RowIndexCollator(collator),
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )
        dataloader = self.accelerator.prepare(dataloader)

        model = self.model
        was_training = model.training
        model.eval()
        query_batches, row_batches = [], []
        show_progress = not self.args.disable_tqdm and self.is_local_process_zero()
        for batch in tqdm(dataloader, desc=description, disable=not show_progress, leave=False):
            rows = batch.pop("row_index")
            batch.pop("positive_item_ids", None)
            batch = self._prepare_inputs(batch)
            with torch.no_grad(), self.compute_loss_context_manager():
                outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            queries = outputs["query_embeddings"] if isinstance(outputs, dict) else outputs.query_embeddings
            query_batches.append(self.accelerator.gather_for_metrics(queries.float().contiguous()).cpu())
            row_batches.append(self.accelerator.gather_for_metrics(rows.to(queries.device)).cpu())
        model.train(was_training)

        queries = torch.cat(query_batches)  # [N, d]
        row_indices = torch.cat(row_batches)
        order = torch.argsort(row_indices)
        queries, row_indices = queries[order], row_indices[order]
        if row_indices.tolist() != list(range(len(dataset))):
            raise RuntimeError(
                f"Evaluation gathered {len(row_indices)} rows for a dataset of {len(dataset)}; the rows do not cover "
                "the dataset exactly once. This is a bug in the distributed setup; please report it."
            )

        rows = [dataset[index] for index in range(len(dataset))]
        histories = [list(row["history"]) for row in rows]
        targets = [int(row["target"]) for row in rows]
        item_table = self.accelerator.unwrap_model(self.model).item_embeddings.detach().float().cpu()
        ranking = evaluate_full_ranking(
            queries,
            item_table,
            histories,
            targets,
            ks=tuple(_arg(self.args, "eval_ks")),
            similarity="cosine",
            batch_size=self.args.eval_batch_size,
            chunk_size=_arg(self.args, "eval_chunk_size"),
        )

        metrics = {f"{metric_key_prefix}_{name}": value for name, value in ranking.items()}
        num_steps = math.ceil(len(dataset) / (self.args.eval_batch_size * self.args.world_size))
        metrics.update(speed_metrics(metric_key_prefix, start_time, num_samples=len(dataset), num_steps=num_steps))
        return queries, torch.tensor(targets, dtype=torch.long), metrics

    def _evaluation_collator(self) -> TokenRecDataCollator:
        """Build the collator of evaluation prompts: one fixed template, history in order, no negatives."""
        tokenizer = self.processing_class
        if tokenizer is None:
            raise ValueError("Evaluation builds prompts with a TokenRecTokenizer: pass processing_class=tokenizer.")
        template = resolve_eval_template(tokenizer, _arg(self.args, "eval_prompt"), _arg(self.args, "eval_template"))
        return TokenRecDataCollator(
            tokenizer,
            num_negatives=0,
            num_items=getattr(self.data_collator, "num_items", None),
            template_ids=[template],
            shuffle_history=False,
            max_length=_arg(self.args, "max_length"),
            max_history_tokens=_arg(self.args, "max_history_tokens"),
            pad_to_multiple_of=_arg(self.args, "pad_to_multiple_of"),
        )


def check_components(
    model: torch.nn.Module | None, tokenizer: TokenRecTokenizer | None, data: InteractionData | None
) -> None:
    """Check that the model, the tokenizer and the split use the same vocabulary, users and items.

    The split's user and item indices must be the rows of the tokenizer's code tables, and the model's item table
    must have one row per tokenizer item.

    Raises:
        ValueError: Naming the first mismatch and how to fix it.
    """
    if model is not None and tokenizer is not None and hasattr(model, "check_tokenizer"):
        model.check_tokenizer(tokenizer)
    if tokenizer is None or data is None:
        return

    for side, split_ids, tokenizer_ids in (
        ("user", data.user_ids, list(tokenizer.user_ids)),
        ("item", data.item_ids, list(tokenizer.item_ids)),
    ):
        if len(tokenizer_ids) < len(split_ids):
            raise ValueError(
                f"The split has {len(split_ids)} {side}s but the tokenizer only {len(tokenizer_ids)}; build the "
                f"tokenizer from the collaborative model trained on this split."
            )
        for index, (split_id, tokenizer_id) in enumerate(zip(split_ids, tokenizer_ids, strict=False)):
            if split_id != tokenizer_id:
                raise ValueError(
                    f"{side.capitalize()} index {index} is {split_id!r} in the split but {tokenizer_id!r} in the "
                    f"tokenizer; both must use the same {side} id map (build the tokenizer from the collaborative "
                    "model trained on this split)."
                )


def resolve_eval_template(tokenizer: TokenRecTokenizer, eval_prompt: str, eval_template: int | None = None) -> int:
    """Return the template index for evaluation prompts.

    Args:
        tokenizer: The tokenizer whose templates are used.
        eval_prompt: `"history"`, `"user_only"` or `"unseen"`.
        eval_template: An explicit template index, which wins over `eval_prompt`.

    Raises:
        ValueError: For an unknown `eval_prompt`, or when the tokenizer has no template of that kind.
    """
    if eval_template is not None:
        return int(eval_template)
    if eval_prompt == "unseen":
        if tokenizer.unseen_template_id is None:
            raise ValueError("eval_prompt='unseen' needs a held-out template, but the tokenizer has none.")
        return int(tokenizer.unseen_template_id)
    if eval_prompt not in ("history", "user_only"):
        raise ValueError(f"eval_prompt={eval_prompt!r} is not supported; use 'history', 'user_only' or 'unseen'.")

    kind_ids = tokenizer.history_template_ids if eval_prompt == "history" else tokenizer.user_only_template_ids
    for template in tokenizer.seen_template_ids:
        if template in kind_ids:
            return int(template)
    raise ValueError(f"The tokenizer has no seen template of kind {eval_prompt!r}; pass eval_template= explicitly.")


def _arg(args: TrainingArguments, name: str) -> Any:
    """Read a TokenRec option from `args`, falling back to the TokenRecTrainingArguments default."""
    if hasattr(args, name):
        return getattr(args, name)
    default = TokenRecTrainingArguments.__dataclass_fields__[name]
    return default.default_factory() if default.default_factory is not None else default.default


class _IndexedRows(Dataset):
    """Add each row's position (`row_index`) so gathered queries can be matched to their rows."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**self.dataset[index], "row_index": index}


class _RowIndexCollator:
    def __init__(self, collator: TokenRecDataCollator) -> None:
        self.collator = collator

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(features)
        batch["row_index"] = torch.tensor([feature["row_index"] for feature in features], dtype=torch.long)
        return batch


class _EpochSeedCallback(TrainerCallback):
    """Tell the sampler, the training examples and the collator which epoch starts.

    The epoch is derived as the Trainer derives it when resuming (`global_step // update_steps_per_epoch`), so a
    resumed run draws the same examples, templates and negatives as an uninterrupted one.
    """

    def __init__(self, trainer: TokenRecTrainer) -> None:
        self.trainer = trainer

    def on_epoch_begin(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        train_dataloader: DataLoader | None = None,
        **kwargs: Any,
    ) -> None:
        if train_dataloader is None:
            return
        try:
            batches_per_epoch = len(train_dataloader)
        except TypeError:
            return
        update_steps_per_epoch = max(math.ceil(batches_per_epoch / args.gradient_accumulation_steps), 1)
        self.trainer._set_epoch(state.global_step // update_steps_per_epoch)


class TrainingCurvesCallback(TrainerCallback):
    """Save `training_curves.png` in the output folder: loss parts and evaluation metrics against the step.

    The figure is redrawn after every evaluation and at the end of training, on the main process only.
    """

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            plot_training_curves(state.log_history, Path(args.output_dir) / TRAINING_CURVES_FILE)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            plot_training_curves(state.log_history, Path(args.output_dir) / TRAINING_CURVES_FILE)


def plot_training_curves(log_history: Sequence[dict[str, float]], path: str | Path) -> Path | None:
    """Plot the training loss (with its positive and negative parts) and the `eval_` ranking metrics against the step.

    Args:
        log_history: `TrainerState.log_history`.
        path: Where to write the PNG.

    Returns:
        The path written, or `None` when the history has nothing to plot.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    loss_names = ["loss", *LOSS_PART_NAMES]
    loss_curves = {name: [(row["step"], row[name]) for row in log_history if name in row] for name in loss_names}
    metric_names = sorted(
        {key for row in log_history for key in row if key.startswith("eval_") and ("@" in key)},
        key=lambda key: (key.split("@")[0], int(key.split("@")[1]) if key.split("@")[1].isdigit() else 0),
    )
    metric_curves = {name: [(row["step"], row[name]) for row in log_history if name in row] for name in metric_names}
    if not any(loss_curves.values()) and not any(metric_curves.values()):
        return None

    figure = Figure(figsize=(11, 4))
    FigureCanvasAgg(figure)
    loss_axes, metric_axes = figure.subplots(1, 2)
    for name, points in loss_curves.items():
        if points:
            steps, values = zip(*points, strict=True)
            loss_axes.plot(steps, values, label=name, marker="." if len(points) < 30 else None)
    loss_axes.set_xlabel("step")
    loss_axes.set_ylabel("training loss")
    loss_axes.set_title("Training loss")
    for name, points in metric_curves.items():
        if points:
            steps, values = zip(*points, strict=True)
            metric_axes.plot(steps, values, label=name.removeprefix("eval_"), marker="o")
    metric_axes.set_xlabel("step")
    metric_axes.set_ylabel("validation metric")
    metric_axes.set_title("Validation full ranking")
    for axes in (loss_axes, metric_axes):
        if axes.get_legend_handles_labels()[0]:
            axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    figure.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    figure.savefig(temporary, format="png", dpi=100)
    temporary.replace(path)
    return path
