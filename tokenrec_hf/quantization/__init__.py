"""MQ-Tokenizer: masked vector quantization of collaborative embeddings into K ID tokens per user or item."""

from .configuration_mq_tokenizer import MQTokenizerConfig
from .metrics import codebook_metrics, dead_unit_fractions, evaluate_mq_tokenizer
from .modeling_mq_tokenizer import MQTokenizer, MQTokenizerOutput, MQTokenizerPreTrainedModel
from .plotting import plot_codebook_usage, plot_training_curves
from .training import (
    MQTokenizerTrainingArguments,
    MQTokenizerTrainingResult,
    collapsed_codebooks,
    train_mq_tokenizer,
)

__all__ = [
    "MQTokenizer",
    "MQTokenizerConfig",
    "MQTokenizerOutput",
    "MQTokenizerPreTrainedModel",
    "MQTokenizerTrainingArguments",
    "MQTokenizerTrainingResult",
    "codebook_metrics",
    "collapsed_codebooks",
    "dead_unit_fractions",
    "evaluate_mq_tokenizer",
    "plot_codebook_usage",
    "plot_training_curves",
    "train_mq_tokenizer",
]
