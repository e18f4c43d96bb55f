"""The stages of the end-to-end pipeline in `tokenrec_hf.pipeline`, one function each.

Every function takes the pipeline arguments, the backbone plan and the output folder, writes its artifact there
and returns a few facts that the pipeline records in `pipeline_state.json`.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import EarlyStoppingCallback
from transformers.utils import logging

from .utils import atomic_write_json, atomic_write_text, load_json

if TYPE_CHECKING:
    from .data import InteractionData
    from .pipeline import BackbonePlan, PipelineArguments

logger = logging.get_logger(__name__)

METRIC_NAMES = [f"{name}@{k}" for name in ("hr", "ndcg") for k in (10, 20, 30)]
# Each retry of a collapsed MQ-Tokenizer divides the learning rate by this (5e-3 becomes 1e-3).
MQ_RETRY_FACTOR = 5


def _load_data(output_dir: Path) -> InteractionData:
    from .data import InteractionData

    return InteractionData.from_pretrained(output_dir / "data")


def _load_collaborative(output_dir: Path):
    from .collaborative import CollaborativeModel

    return CollaborativeModel.from_pretrained(output_dir / "collaborative")


def _unseen_user_histories(data: InteractionData) -> list[list[int]]:
    # An unseen user's test-time history: their training items plus the validation item.
    return [list(data.history(user, "test")) for user in data.unseen_users]


def run_data_stage(args: PipelineArguments, plan: BackbonePlan, output_dir: Path) -> dict[str, Any]:
    """Load the named dataset, split it with leave-one-out, and save the split to `data/`."""
    from .data import load_named_dataset
    from .data.download import sha256_of_file

    data = load_named_dataset(
        args.dataset,
        args.data_dir,
        max_sequence_length=args.max_sequence_length,
        unseen_user_fraction=args.unseen_user_fraction,
    )
    data.save_pretrained(output_dir / "data")
    print(data.format_split_stats())
    facts = {"num_users": data.num_users, "num_items": data.num_items, "num_interactions": data.num_interactions}
    if data.source is not None and Path(data.source).is_file():
        # Lets a later run notice that the file changed under a finished data stage.
        facts.update(source=str(Path(data.source).resolve()), source_sha256=sha256_of_file(data.source))
    return facts


def run_collaborative_stage(args: PipelineArguments, plan: BackbonePlan, output_dir: Path) -> dict[str, Any]:
    """Train LightGCN or MF on the seen users' training interactions and save it to `collaborative/`."""
    from .collaborative import CollaborativeConfig, CollaborativeTrainingArguments, train_collaborative

    data = _load_data(output_dir)
    work_dir = output_dir / "collaborative_training"
    if (work_dir / "checkpoint").is_dir():
        logger.warning(f"Resuming the collaborative stage from {work_dir / 'checkpoint'}.")
    config = CollaborativeConfig(
        architecture=args.collaborative_model,
        num_users=data.num_users,
        num_items=data.num_items,
        embedding_dim=args.embedding_dim,
        num_layers=args.num_layers,
    )
    training_args = CollaborativeTrainingArguments(
        output_dir=str(work_dir),
        num_epochs=args.collaborative_epochs,
        batch_size=args.collaborative_batch_size,
        learning_rate=args.collaborative_learning_rate,
        patience=args.collaborative_patience,
        seed=args.seed,
        resume_from_checkpoint=True if (work_dir / "checkpoint").is_dir() else None,
        # The test split is scored once, in the final stage, next to TokenRec.
        evaluate_test=False,
        disable_tqdm=args.disable_tqdm,
    )
    result = train_collaborative(config, data, training_args)
    result.model.save_pretrained(output_dir / "collaborative")
    curve = work_dir / "training_curve.png"
    if curve.is_file():
        shutil.copyfile(curve, output_dir / "plots" / "collaborative_training_curve.png")
    atomic_write_json(
        output_dir / "collaborative" / "training_summary.json",
        {
            "best_epoch": result.best_epoch,
            "epochs_trained": result.epochs_trained,
            "validation": result.validation,
            "seconds_per_epoch": result.seconds_per_epoch,
            "history": result.history,
        },
    )
    return {"best_epoch": result.best_epoch, "validation_ndcg@20": result.validation.get("ndcg@20")}


def run_tokenizer_stage(args: PipelineArguments, plan: BackbonePlan, output_dir: Path) -> dict[str, Any]:
    """Train the user and item MQ-Tokenizers and save the `TokenRecTokenizer` at the output folder's root.

    The user MQ-Tokenizer learns from seen users only. Users held out of training get their collaborative
    embedding by fold-in and their tokens from the frozen user MQ-Tokenizer, as a new user would.
    """
    from .quantization import (
        MQTokenizerConfig,
        MQTokenizerTrainingArguments,
        codebook_metrics,
        collapsed_codebooks,
        plot_codebook_usage,
        plot_training_curves,
        train_mq_tokenizer,
    )
    from .tokenization_tokenrec import TokenRecTokenizer

    data = _load_data(output_dir)
    collaborative = _load_collaborative(output_dir)
    user_table = collaborative.user_representations.detach().clone()
    item_table = collaborative.item_representations.detach().clone()
    seen = torch.tensor(data.seen_users, dtype=torch.long)

    config = MQTokenizerConfig(
        input_dim=user_table.shape[1],
        num_codebooks=args.num_codebooks,
        codebook_size=args.codebook_size,
        mask_ratio=args.mask_ratio,
        quantizer=args.quantizer,
    )
    if args.one_way:
        config = MQTokenizerConfig.one_way(config)

    quantizers = {}
    summary: dict[str, Any] = {}
    for side, embeddings in (("user", user_table[seen]), ("item", item_table)):
        learning_rate, collapsed_at = args.mq_learning_rate, []
        for attempt in range(args.mq_collapse_retries + 1):
            training_args = MQTokenizerTrainingArguments(
                output_dir=str(output_dir / f"{side}_quantizer_training"),
                num_train_epochs=args.mq_epochs,
                learning_rate=learning_rate,
                seed=args.seed,
                disable_tqdm=args.disable_tqdm,
                warn_on_collapse=False,
            )
            quantizer, result = train_mq_tokenizer(
                embeddings, MQTokenizerConfig.from_dict(config.to_dict()), training_args
            )
            codes = quantizer.encode(embeddings)
            collapsed = collapsed_codebooks(codes, quantizer.config.codebook_size)
            usage = ", ".join(f"codebook {index}: {value:.1%}" for index, value in collapsed.items())
            if collapsed and attempt == args.mq_collapse_retries:
                logger.warning(
                    f"The {side} MQ-Tokenizer trained at learning rate {learning_rate:g} has collapsed codebooks "
                    f"(usage {usage}) after {args.mq_collapse_retries} retries (--mq_collapse_retries). "
                    f"Check plots/{side}_codebook_usage.png, and consider a lower --mq_learning_rate."
                )
            if not collapsed or attempt == args.mq_collapse_retries:
                break
            collapsed_at.append(learning_rate)
            learning_rate /= MQ_RETRY_FACTOR
            logger.warning(
                f"The {side} MQ-Tokenizer collapsed (usage {usage}); training it again from scratch "
                f"with learning rate {learning_rate:g} ({attempt + 1} of {args.mq_collapse_retries} retries)."
            )
        quantizers[side] = quantizer
        metrics = codebook_metrics(codes, quantizer.config.codebook_size)
        summary[side] = {key: value for key, value in metrics.items() if not isinstance(value, torch.Tensor)}
        summary[side].update(learning_rate=learning_rate, collapsed_learning_rates=collapsed_at)
        logger.warning(
            f"{side.capitalize()} MQ-Tokenizer: {metrics['collision_rate']:.1%} of the {side}s share their whole code "
            f"with another {side}. The least used codebook uses {metrics['min_usage']:.1%} of its codewords."
        )
        plot_codebook_usage(codes, quantizer.config.codebook_size, output_dir / "plots" / f"{side}_codebook_usage.png")
        plot_training_curves(result.history, output_dir / "plots" / f"{side}_quantizer_training.png")

    if data.unseen_users:
        folded = collaborative.fold_in_users(_unseen_user_histories(data))
        user_table[torch.tensor(data.unseen_users, dtype=torch.long)] = folded

    tokenizer = TokenRecTokenizer.from_quantizers(
        plan.tokenizer_source,
        quantizers["user"],
        quantizers["item"],
        user_embeddings=user_table,
        item_embeddings=item_table,
        user_ids=data.user_ids,
        item_ids=data.item_ids,
    )
    tokenizer.save_pretrained(output_dir)
    atomic_write_json(output_dir / "codebook_metrics.json", _jsonable(summary))
    return {
        "user_collision_rate": summary["user"].get("collision_rate"),
        "item_collision_rate": summary["item"].get("collision_rate"),
        "user_mq_learning_rate": summary["user"]["learning_rate"],
        "item_mq_learning_rate": summary["item"]["learning_rate"],
    }


def _build_trainer(args: PipelineArguments, output_dir: Path, model, tokenizer, data):
    from .trainer import TokenRecTrainer
    from .training_args import TokenRecTrainingArguments

    extra = {"example_sampling": args.example_sampling} if args.example_sampling else {}
    training_args = TokenRecTrainingArguments(
        output_dir=str(output_dir / "llm_checkpoints"),
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_train_steps,
        learning_rate=args.learning_rate,
        per_device_train_batch_size=args.per_device_train_batch_size,
        per_device_eval_batch_size=args.per_device_eval_batch_size,
        num_negatives=args.num_negatives,
        seed=args.seed,
        disable_tqdm=args.disable_tqdm,
        logging_steps=10,
        report_to="none",
        **extra,
    )
    callbacks = [EarlyStoppingCallback(early_stopping_patience=args.early_stopping_patience)]
    return TokenRecTrainer(model=model, args=training_args, data=data, processing_class=tokenizer, callbacks=callbacks)


def run_llm_stage(args: PipelineArguments, plan: BackbonePlan, output_dir: Path) -> dict[str, Any]:
    """Fine-tune the backbone with the cosine-margin loss, select on validation, and save the model at the root."""
    from .modeling_tokenrec import TokenRecForRetrieval
    from .tokenization_tokenrec import TokenRecTokenizer

    data = _load_data(output_dir)
    collaborative = _load_collaborative(output_dir)
    tokenizer = TokenRecTokenizer.from_pretrained(output_dir)
    backbone = plan.source if plan.pretrained else plan.config
    # Seeds the random backbone and the projection head, so a run is reproducible for a seed.
    torch.manual_seed(args.seed)
    model = TokenRecForRetrieval.from_backbone(
        backbone,
        tokenizer,
        item_embeddings=collaborative.item_representations.detach().clone(),
        query_pooling=args.query_pooling,
        margin=args.margin,
        num_negatives=args.num_negatives,
    )
    if args.id_embedding_init == "codebooks":
        model.init_id_embeddings_from_codebooks(tokenizer, generator=torch.Generator().manual_seed(args.seed))

    checkpoints = output_dir / "llm_checkpoints"
    # transformers writes trainer_state.json last, so a checkpoint without it was cut off while saving.
    for path in sorted(checkpoints.glob("checkpoint-*")):
        if not (path / "trainer_state.json").is_file():
            logger.warning(f"Deleting {path}: it has no trainer_state.json, so its save was interrupted.")
            shutil.rmtree(path)
    resume = any(checkpoints.glob("checkpoint-*"))
    trainer = _build_trainer(args, output_dir, model, tokenizer, data)
    if resume:
        logger.warning(f"Resuming the LLM stage from the latest checkpoint in {checkpoints}.")
    started = time.time()
    trainer.train(resume_from_checkpoint=True if resume else None)
    train_seconds = time.time() - started

    validation = trainer.evaluate()
    trainer.model.save_pretrained(output_dir)
    curves = checkpoints / "training_curves.png"
    if curves.is_file():
        shutil.copyfile(curves, output_dir / "plots" / "llm_training_curves.png")
    atomic_write_json(
        output_dir / "llm_training_summary.json",
        {
            "validation": validation,
            "train_seconds": train_seconds,
            "global_step": trainer.state.global_step,
            "best_model_checkpoint": trainer.state.best_model_checkpoint,
            "backbone": plan.description,
            "log_history": trainer.state.log_history,
        },
    )
    return {"validation_ndcg@20": validation.get("eval_ndcg@20"), "train_seconds": round(train_seconds, 1)}


def run_test_stage(args: PipelineArguments, plan: BackbonePlan, output_dir: Path) -> dict[str, Any]:
    """Score the test targets once for TokenRec (three prompt kinds) and the collaborative model of the same run."""
    from .collaborative import evaluate_collaborative
    from .data_collator import TokenRecEvaluationDataset
    from .modeling_tokenrec import TokenRecForRetrieval
    from .tokenization_tokenrec import TokenRecTokenizer

    data = _load_data(output_dir)
    collaborative = _load_collaborative(output_dir)
    tokenizer = TokenRecTokenizer.from_pretrained(output_dir)
    model = TokenRecForRetrieval.from_pretrained(output_dir)
    trainer = _build_trainer(args, output_dir, model, tokenizer, data)

    results: dict[str, dict[str, float]] = {}
    seen_rows = TokenRecEvaluationDataset(data, stage="test", users=data.seen_users)
    for prompt in ("history", "user_only", "unseen"):
        trainer.args.eval_prompt = prompt
        metrics = trainer.evaluate_test(seen_rows, metric_key_prefix="test")
        results[f"tokenrec_{prompt}"] = _strip_prefix(metrics, "test_")
    results[args.collaborative_model] = evaluate_collaborative(collaborative, data, stage="test")

    if data.unseen_users:
        unseen_rows = TokenRecEvaluationDataset(data, stage="test", users=data.unseen_users)
        trainer.args.eval_prompt = "history"
        results["tokenrec_history_unseen_users"] = _strip_prefix(
            trainer.evaluate_test(unseen_rows, metric_key_prefix="test"), "test_"
        )
        folded = collaborative.fold_in_users(_unseen_user_histories(data))
        results[f"{args.collaborative_model}_unseen_users"] = evaluate_collaborative(
            collaborative, data, stage="test", users=list(data.unseen_users), user_embeddings=folded
        )

    validation = load_json(output_dir / "llm_training_summary.json", what="LLM training summary")["validation"]
    metrics = {
        "dataset": args.dataset,
        "backbone": plan.description,
        "protocol": "leave-one-out, full ranking over the catalog, history items at -inf, selection on validation",
        "num_users": data.num_users,
        "num_seen_users": len(data.seen_users),
        "num_unseen_users": len(data.unseen_users),
        "num_items": data.num_items,
        "validation": _strip_prefix(validation, "eval_"),
        "test": results,
    }
    atomic_write_json(output_dir / "metrics.json", _jsonable(metrics))
    table = format_results_table(results)
    atomic_write_text(
        output_dir / "results.md", f"# Test results on {args.dataset}\n\nBackbone: {plan.description}.\n\n{table}\n"
    )
    print(table)
    _update_model_card(output_dir, model, args, results, metrics)
    return {"test_hr@20": results["tokenrec_history"].get("hr@20")}


def format_results_table(results: dict[str, dict[str, float]]) -> str:
    """Format rows of HR@K / NDCG@K metrics as a Markdown table."""
    header = "| model | " + " | ".join(METRIC_NAMES) + " |"
    lines = [header, "|---" * (len(METRIC_NAMES) + 1) + "|"]
    for name, values in results.items():
        cells = [f"{values[key]:.4f}" if key in values else "" for key in METRIC_NAMES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _update_model_card(output_dir: Path, model, args: PipelineArguments, results, metrics) -> None:
    from .modelcard import TokenRecModelCardData, write_model_card

    card = TokenRecModelCardData(
        dataset_name=args.dataset,
        metrics=results["tokenrec_history"],
        validation_metrics=metrics["validation"],
        num_users=metrics["num_users"],
        seen_users_only=True,
        unseen_user_metrics=results.get("tokenrec_history_unseen_users", {}),
        training={
            "collaborative_model": args.collaborative_model,
            "collaborative_batch_size": args.collaborative_batch_size,
            "collaborative_learning_rate": args.collaborative_learning_rate,
            "mq_learning_rate": args.mq_learning_rate,
            "max_train_steps": args.max_train_steps,
            "num_codebooks": args.num_codebooks,
            "codebook_size": args.codebook_size,
            "mask_ratio": args.mask_ratio,
            "one_way": args.one_way,
            "quantizer": args.quantizer,
            "query_pooling": args.query_pooling,
            "id_embedding_init": args.id_embedding_init,
            "seed": args.seed,
            "learning_rate": args.learning_rate,
            "num_train_epochs": args.num_train_epochs,
            "backbone": metrics["backbone"],
        },
    )
    write_model_card(model, output_dir / "README.md", card)


def _strip_prefix(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {key[len(prefix) :]: value for key, value in metrics.items() if key.startswith(prefix) and "@" in key}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda obj: obj.tolist() if hasattr(obj, "tolist") else str(obj)))
