"""Tests for TokenRecTrainer and TokenRecTrainingArguments with a tiny T5, the real tokenizer and a synthetic split."""

from __future__ import annotations

import pytest
import torch
from scripts.tiny_setup import make_tiny_model, make_tiny_split, make_tiny_tokenizer
from transformers import EarlyStoppingCallback, TrainerCallback

from tokenrec_hf.data_collator import TokenRecDataCollator, TokenRecEvaluationDataset
from tokenrec_hf.evaluation import evaluate_full_ranking
from tokenrec_hf.trainer import TokenRecTrainer, resolve_eval_template
from tokenrec_hf.training_args import TokenRecTrainingArguments

NUM_USERS, NUM_ITEMS = 12, 30


@pytest.fixture(scope="module")
def split():
    return make_tiny_split(num_users=NUM_USERS, num_items=NUM_ITEMS)


@pytest.fixture(scope="module")
def tokenizer(tiny_t5_tokenizer_dir, split):
    return make_tiny_tokenizer(tiny_t5_tokenizer_dir, split)


def make_args(output_dir, **overrides) -> TokenRecTrainingArguments:
    settings = {
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 5,
        "num_train_epochs": 2,
        "learning_rate": 5e-3,
        "logging_steps": 1,
        "use_cpu": True,
        "disable_tqdm": True,
        "report_to": "none",
        "seed": 7,
    }
    settings.update(overrides)
    return TokenRecTrainingArguments(**settings)


def manual_metrics(model, tokenizer, rows, template, ks=(10, 20, 30)):
    """Embed the rows' prompts outside the trainer and rank the catalog with the evaluation module."""
    collator = TokenRecDataCollator(tokenizer, num_negatives=0, template_ids=[template], shuffle_history=False)
    model.eval()
    with torch.no_grad():
        batch = collator([{"user_index": row["user_index"], "history": row["history"]} for row in rows])
        queries = model(**batch).query_embeddings
    return evaluate_full_ranking(
        queries,
        model.item_embeddings,
        [row["history"] for row in rows],
        [row["target"] for row in rows],
        ks,
        similarity="cosine",
    )


# ---- arguments ----


def test_arguments_tokenrec_defaults(tmp_path):
    args = TokenRecTrainingArguments(output_dir=str(tmp_path))
    assert args.remove_unused_columns is False
    assert args.metric_for_best_model == "ndcg@20"
    assert args.greater_is_better is True
    assert args.load_best_model_at_end is True
    assert args.eval_strategy == "epoch"
    assert args.save_strategy == "epoch"
    assert args.num_negatives == 1
    assert args.eval_ks == [10, 20, 30]
    assert args.example_sampling == "one_per_user"
    assert args.train_sampling_strategy == "group_by_length"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"example_sampling": "prefix"}, "example_sampling='prefix' is not supported"),
        ({"eval_prompt": "items"}, "eval_prompt='items' is not supported"),
        ({"num_negatives": 0}, "num_negatives=0 is invalid"),
        ({"eval_ks": [0, 10]}, "eval_ks=\\[0, 10\\] is invalid"),
        ({"max_history_tokens": 600}, "max_history_tokens=600 must be in"),
        ({"pad_to_multiple_of": 0}, "pad_to_multiple_of=0 is invalid"),
        ({"eval_chunk_size": 0}, "eval_chunk_size=0 is invalid"),
    ],
)
def test_arguments_reject_invalid(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        TokenRecTrainingArguments(output_dir=str(tmp_path), **overrides)


# ---- training and evaluation ----


def test_train_logs_parts_and_selects_best(tmp_path, split, tokenizer):
    model = make_tiny_model(tokenizer)
    initial = {name: tensor.clone() for name, tensor in model.named_parameters()}
    trainer = TokenRecTrainer(
        model=model, args=make_args(tmp_path, num_train_epochs=3), data=split, processing_class=tokenizer
    )
    trainer.train()

    changed = [name for name, tensor in model.named_parameters() if not torch.equal(tensor, initial[name])]
    assert any(name.startswith("backbone.") for name in changed)
    assert any(name.startswith("projection.") for name in changed)

    train_logs = [row for row in trainer.state.log_history if "loss" in row and "positive_loss" in row]
    assert len(train_logs) == 9
    for row in train_logs:
        # One negative per positive: the loss is the mean of the two parts.
        assert row["loss"] == pytest.approx((row["positive_loss"] + row["negative_loss"]) / 2, rel=1e-5)

    eval_logs = [row for row in trainer.state.log_history if "eval_ndcg@20" in row]
    assert len(eval_logs) == 3
    for key in ("eval_hr@10", "eval_hr@20", "eval_hr@30", "eval_ndcg@10", "eval_ndcg@30"):
        assert key in eval_logs[0]
    best = max(eval_logs, key=lambda row: row["eval_ndcg@20"])
    assert trainer.state.best_metric == pytest.approx(max(row["eval_ndcg@20"] for row in eval_logs))
    assert trainer.state.best_model_checkpoint.endswith(f"checkpoint-{best['step']}")
    assert (tmp_path / "training_curves.png").stat().st_size > 0


def test_evaluate_matches_manual_ranking(tmp_path, split, tokenizer):
    model = make_tiny_model(tokenizer)
    trainer = TokenRecTrainer(model=model, args=make_args(tmp_path), data=split, processing_class=tokenizer)
    metrics = trainer.evaluate()

    template = resolve_eval_template(tokenizer, "history")
    expected = manual_metrics(model, tokenizer, TokenRecEvaluationDataset(split, "valid").rows, template)
    for name, value in expected.items():
        assert metrics[f"eval_{name}"] == pytest.approx(value, abs=1e-9)
    assert metrics["eval_samples_per_second"] > 0


def test_evaluate_test_uses_validation_item_as_history(tmp_path, split, tokenizer):
    model = make_tiny_model(tokenizer)
    trainer = TokenRecTrainer(model=model, args=make_args(tmp_path), data=split, processing_class=tokenizer)
    prediction = trainer.predict()
    metrics = trainer.evaluate_test()

    rows = TokenRecEvaluationDataset(split, "test").rows
    assert all(row["history"][-1] == split.valid[row["user_index"]] for row in rows)
    expected = manual_metrics(model, tokenizer, rows, resolve_eval_template(tokenizer, "history"))
    for name, value in expected.items():
        assert metrics[f"test_{name}"] == pytest.approx(value, abs=1e-9)
    assert prediction.predictions.shape == (NUM_USERS, model.config.collaborative_dim)
    assert prediction.label_ids.tolist() == split.test


@pytest.mark.parametrize("eval_prompt", ["user_only", "unseen"])
def test_evaluate_other_prompts(tmp_path, split, tokenizer, eval_prompt):
    model = make_tiny_model(tokenizer)
    args = make_args(tmp_path, eval_prompt=eval_prompt)
    metrics = TokenRecTrainer(model=model, args=args, data=split, processing_class=tokenizer).evaluate()

    template = resolve_eval_template(tokenizer, eval_prompt)
    if eval_prompt == "unseen":
        assert template == tokenizer.unseen_template_id
    else:
        assert template in tokenizer.user_only_template_ids
    expected = manual_metrics(model, tokenizer, TokenRecEvaluationDataset(split, "valid").rows, template)
    assert metrics["eval_ndcg@20"] == pytest.approx(expected["ndcg@20"], abs=1e-9)


def test_test_split_blocked_during_training(tmp_path, split, tokenizer):
    class ScoreTestMidway(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            trainer.evaluate_test()

    args = make_args(tmp_path, eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    trainer = TokenRecTrainer(
        model=make_tiny_model(tokenizer),
        args=args,
        data=split,
        processing_class=tokenizer,
        callbacks=[ScoreTestMidway()],
    )
    with pytest.raises(RuntimeError, match="cannot be scored during training"):
        trainer.train()


def test_early_stopping_stops_on_plateau(tmp_path, split, tokenizer):
    args = make_args(tmp_path, num_train_epochs=6, learning_rate=0.0, plot_training_curves=False)
    trainer = TokenRecTrainer(
        model=make_tiny_model(tokenizer),
        args=args,
        data=split,
        processing_class=tokenizer,
        callbacks=[EarlyStoppingCallback(early_stopping_patience=1)],
    )
    trainer.train()
    evaluations = [row for row in trainer.state.log_history if "eval_ndcg@20" in row]
    assert len(evaluations) == 2
    assert trainer.state.global_step == 6


def test_resume_matches_uninterrupted_run(tmp_path, split, tokenizer):
    class StopAtStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 4:
                control.should_training_stop = True

    def run(output_dir, callbacks=(), resume=None):
        args = make_args(
            output_dir,
            max_steps=6,
            eval_strategy="no",
            save_strategy="steps",
            save_steps=2,
            load_best_model_at_end=False,
            save_total_limit=None,
            plot_training_curves=False,
        )
        model = make_tiny_model(tokenizer, dropout_rate=0.1)
        trainer = TokenRecTrainer(
            model=model, args=args, data=split, processing_class=tokenizer, callbacks=list(callbacks)
        )
        trainer.train(resume_from_checkpoint=resume)
        return trainer

    uninterrupted = run(tmp_path / "full")
    interrupted = run(tmp_path / "cut", callbacks=[StopAtStep()])
    assert interrupted.state.global_step == 4
    resumed = run(tmp_path / "cut", resume=str(tmp_path / "cut" / "checkpoint-4"))

    assert resumed.state.global_step == 6
    expected = uninterrupted.model.state_dict()
    for name, tensor in resumed.model.state_dict().items():
        torch.testing.assert_close(tensor, expected[name], rtol=0, atol=1e-6, msg=name)


def test_epochs_draw_different_examples(tmp_path, split, tokenizer):
    args = make_args(
        tmp_path,
        num_train_epochs=2,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        train_sampling_strategy="random",
    )
    trainer = TokenRecTrainer(model=make_tiny_model(tokenizer), args=args, data=split, processing_class=tokenizer)

    seen_targets = []
    original = trainer.data_collator.__call__

    class Recorder:
        def __call__(self, features):
            seen_targets.append(tuple(sorted((row["user_index"], row["target"]) for row in features)))
            return original(features)

    trainer.data_collator = Recorder()
    trainer.train()
    epochs = [frozenset(pair for batch in seen_targets[start : start + 3] for pair in batch) for start in (0, 3)]
    assert len(seen_targets) == 6
    assert all(len(epoch) == NUM_USERS for epoch in epochs)
    assert len(set(epochs)) > 1


def test_group_by_length_batches_similar_prompts(tmp_path, split, tokenizer):
    args = make_args(tmp_path)
    trainer = TokenRecTrainer(model=make_tiny_model(tokenizer), args=args, data=split, processing_class=tokenizer)
    sampler = trainer._get_train_sampler()
    sampler.set_epoch(1)
    keys = list(sampler)
    lengths = [trainer.data_collator.prompt_length(trainer.train_dataset[key]) for key in keys]

    assert sorted(index for _, index in keys) == list(range(NUM_USERS))
    assert lengths == sorted(lengths, reverse=True)
    with pytest.raises(ValueError, match="train_sampling_strategy='batch_rebalance' is not supported"):
        trainer.args.train_sampling_strategy = "batch_rebalance"
        trainer._get_train_sampler()


def test_trainer_rejects_mismatched_components(tmp_path, split, tokenizer):
    other_split = make_tiny_split(num_users=NUM_USERS, num_items=NUM_ITEMS)
    other_split.item_ids[3] = "renamed"
    with pytest.raises(ValueError, match="Item index 3 is 'renamed' in the split but 'i3' in the tokenizer"):
        TokenRecTrainer(
            model=make_tiny_model(tokenizer), args=make_args(tmp_path), data=other_split, processing_class=tokenizer
        )
    with pytest.raises(ValueError, match="needs a TokenRecTokenizer"):
        TokenRecTrainer(model=make_tiny_model(tokenizer), args=make_args(tmp_path), data=split)


def test_training_curves_written(tmp_path, split, tokenizer):
    from tokenrec_hf.trainer import plot_training_curves

    history = [
        {"loss": 0.5, "positive_loss": 0.9, "negative_loss": 0.1, "step": 1},
        {"eval_ndcg@20": 0.1, "eval_hr@20": 0.3, "step": 1},
        {"loss": 0.4, "positive_loss": 0.7, "negative_loss": 0.1, "step": 2},
    ]
    path = plot_training_curves(history, tmp_path / "curves.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_training_curves([{"train_runtime": 1.0, "step": 2}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()

    # A run shorter than the logging interval logs no loss, only the final evaluation.
    short = plot_training_curves([{"eval_ndcg@20": 0.1, "step": 1}], tmp_path / "short.png")
    assert short.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
