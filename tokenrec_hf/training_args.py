"""Training arguments for fine-tuning a TokenRec backbone with [`TokenRecTrainer`]."""

from __future__ import annotations

from dataclasses import dataclass, field

from transformers import TrainingArguments

from .data_collator import EXAMPLE_SAMPLING_MODES

EVAL_PROMPT_MODES = ("history", "user_only", "unseen")


@dataclass
class TokenRecTrainingArguments(TrainingArguments):
    r"""
    [`~transformers.TrainingArguments`] for the generative-retrieval step of TokenRec: the backbone, its ID-token
    embeddings and the projection head learn to map a prompt to a query that is close (cosine) to the next item's
    collaborative representation.

    Only the parameters specific to TokenRec are listed here. See [`~transformers.TrainingArguments`] for the others.

    Parameters that control the training examples:

        example_sampling (`str`, *optional*, defaults to `"one_per_user"`):
            How training examples are drawn from the training interactions. `"one_per_user"`: each epoch contains one
            example per user, whose target is a random training item of that user (a fresh draw every epoch) and
            whose history is the user's other training items. `"all_items"`: each epoch contains one example per training
            interaction, with that item as the target and the user's other training items as the history.
        num_negatives (`int`, *optional*, defaults to `1`):
            Negative items sampled per positive, uniformly from the items outside the user's training items. The
            TokenRec paper uses a 1:1 ratio.
        max_length (`int`, *optional*, defaults to `512`):
            Maximum prompt length in tokens, the `</s>` included. Longer histories keep their most recent items.
        max_history_tokens (`int`, *optional*):
            Token budget of the history inside a prompt. Defaults to `max_length` minus the template's own tokens
            (computed by the tokenizer).
        pad_to_multiple_of (`int`, *optional*):
            Pad each batch to the longest prompt rounded up to this multiple (8 suits tensor cores). Batches are
            never padded to `max_length`.
        shuffle_history (`bool`, *optional*, defaults to `True`):
            Shuffle the history items inside each training prompt, a fresh order every epoch.

    Parameters that control evaluation:

        eval_prompt (`str`, *optional*, defaults to `"history"`):
            Prompt used for validation and test queries: `"history"` (user ID tokens and the history, a seen
            template), `"user_only"` (user ID tokens only, a seen template) or `"unseen"` (the held-out template).
        eval_template (`int`, *optional*):
            Index of the template used for evaluation prompts. Overrides `eval_prompt`.
        eval_ks (`list[int]`, *optional*, defaults to `[10, 20, 30]`):
            Cutoffs of the full-ranking HR@K and NDCG@K reported by evaluation.
        eval_chunk_size (`int`, *optional*, defaults to `4096`):
            Items scored at once by the full-ranking top-K, which bounds evaluation memory.
        plot_training_curves (`bool`, *optional*, defaults to `True`):
            Save `training_curves.png` (loss parts and evaluation metrics against the step) in `output_dir` after
            every evaluation and at the end of training.

    Defaults that differ from [`~transformers.TrainingArguments`]:

        - `remove_unused_columns=False`: the collator needs the `user_index`, `history` and `target` columns.
        - `eval_strategy="epoch"` and `save_strategy="epoch"`.
        - `load_best_model_at_end=True`, `metric_for_best_model="ndcg@20"`, `greater_is_better=True`: the best
          checkpoint is selected on the validation targets, never on the test targets.
        - `save_total_limit=2`: the best checkpoint and the latest one.
        - `logging_steps=50`.
        - `train_sampling_strategy="group_by_length"`: batches hold prompts of similar length (megabatches of 50 steps
          sorted by the exact prompt length), so dynamic padding wastes few tokens. On LastFM this trains a
          random-init t5-small 7.5x faster than padding to 512 (2.2x with random batches); see
          benchmarks/training_throughput.py. Set `"random"` for batches drawn uniformly.
    """

    # --- Training examples ---
    example_sampling: str = field(
        default="one_per_user",
        metadata={
            "help": "How training examples are drawn: 'one_per_user' (one random training item per user per epoch as "
            "the target) or 'all_items' (every training interaction is a target once per epoch).",
            "choices": list(EXAMPLE_SAMPLING_MODES),
        },
    )
    num_negatives: int = field(
        default=1,
        metadata={"help": "Negative items sampled per positive from the items outside the user's training items."},
    )
    max_length: int = field(
        default=512, metadata={"help": "Maximum prompt length in tokens; longer histories keep their latest items."}
    )
    max_history_tokens: int | None = field(
        default=None,
        metadata={"help": "Token budget of the history in a prompt. Defaults to what `max_length` leaves free."},
    )
    pad_to_multiple_of: int | None = field(
        default=None,
        metadata={"help": "Pad each batch to the longest prompt rounded up to this multiple (never to max_length)."},
    )
    shuffle_history: bool = field(
        default=True, metadata={"help": "Shuffle the history items inside each training prompt."}
    )

    # --- Evaluation ---
    eval_prompt: str = field(
        default="history",
        metadata={
            "help": "Prompt for validation and test queries: 'history', 'user_only' or 'unseen' (held-out template).",
            "choices": list(EVAL_PROMPT_MODES),
        },
    )
    eval_template: int | None = field(
        default=None, metadata={"help": "Template index for evaluation prompts; overrides `eval_prompt`."}
    )
    eval_ks: list[int] = field(
        default_factory=lambda: [10, 20, 30],
        metadata={"help": "Cutoffs K of the full-ranking HR@K and NDCG@K."},
    )
    eval_chunk_size: int = field(
        default=4096, metadata={"help": "Items scored at once by the full-ranking top-K (bounds evaluation memory)."}
    )
    plot_training_curves: bool = field(
        default=True, metadata={"help": "Save training_curves.png (loss and evaluation metrics) in output_dir."}
    )

    # --- Defaults that differ from transformers ---
    remove_unused_columns: bool = field(
        default=False,
        metadata={"help": "Keep dataset columns the model does not take; the TokenRec collator needs them."},
    )
    eval_strategy: str = field(default="epoch", metadata={"help": "When to evaluate: 'no', 'steps' or 'epoch'."})
    save_strategy: str = field(
        default="epoch", metadata={"help": "When to save a checkpoint: 'no', 'steps', 'epoch' or 'best'."}
    )
    load_best_model_at_end: bool = field(
        default=True, metadata={"help": "Load the checkpoint with the best validation metric at the end of training."}
    )
    metric_for_best_model: str | None = field(
        default="ndcg@20", metadata={"help": "Validation metric that selects the best checkpoint."}
    )
    greater_is_better: bool | None = field(
        default=True, metadata={"help": "Whether a higher `metric_for_best_model` is better."}
    )
    save_total_limit: int | None = field(
        default=2, metadata={"help": "Maximum number of checkpoints kept in output_dir (the best one is kept)."}
    )
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N update steps."})
    train_sampling_strategy: str = field(
        default="group_by_length",
        metadata={
            "help": "Order of training examples: 'group_by_length' (batches of similar prompt length), 'random' or "
            "'sequential'."
        },
    )

    def __post_init__(self) -> None:
        if self.example_sampling not in EXAMPLE_SAMPLING_MODES:
            raise ValueError(
                f"example_sampling={self.example_sampling!r} is not supported; use one of {list(EXAMPLE_SAMPLING_MODES)}."
            )
        if self.eval_prompt not in EVAL_PROMPT_MODES:
            raise ValueError(
                f"eval_prompt={self.eval_prompt!r} is not supported; use one of {list(EVAL_PROMPT_MODES)}."
            )
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives={self.num_negatives} is invalid; it must be at least 1.")
        if self.max_length < 8:
            raise ValueError(f"max_length={self.max_length} is too small for a prompt; use at least 8 tokens.")
        if self.max_history_tokens is not None and not 0 <= self.max_history_tokens < self.max_length:
            raise ValueError(
                f"max_history_tokens={self.max_history_tokens} must be in [0, max_length={self.max_length})."
            )
        if self.pad_to_multiple_of is not None and self.pad_to_multiple_of < 1:
            raise ValueError(
                f"pad_to_multiple_of={self.pad_to_multiple_of} is invalid; use a positive integer or None."
            )
        if self.eval_template is not None and self.eval_template < 0:
            raise ValueError(f"eval_template={self.eval_template} is invalid; use a template index >= 0 or None.")
        if isinstance(self.eval_ks, int):
            self.eval_ks = [self.eval_ks]
        self.eval_ks = [int(k) for k in self.eval_ks]
        if not self.eval_ks or any(k < 1 for k in self.eval_ks):
            raise ValueError(f"eval_ks={self.eval_ks} is invalid; give one or more cutoffs >= 1, e.g. [10, 20, 30].")
        if self.eval_chunk_size < 1:
            raise ValueError(f"eval_chunk_size={self.eval_chunk_size} is invalid; use a positive number of items.")

        super().__post_init__()
