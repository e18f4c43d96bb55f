"""Collaborative filtering (LightGCN and matrix factorization with BPR) that produces TokenRec's user and item embeddings."""

from .configuration_collaborative import ARCHITECTURES, CollaborativeConfig
from .modeling_collaborative import (
    CollaborativeModel,
    CollaborativeOutput,
    CollaborativePreTrainedModel,
    InteractionGraph,
    LightGCNPropagation,
    build_interaction_graph,
    propagate_autograd,
    propagate_layers,
    sample_negatives,
)
from .training_collaborative import (
    CollaborativeTrainingArguments,
    CollaborativeTrainingResult,
    build_graph_for,
    evaluate_collaborative,
    train_collaborative,
)

__all__ = [
    "ARCHITECTURES",
    "CollaborativeConfig",
    "CollaborativeModel",
    "CollaborativeOutput",
    "CollaborativePreTrainedModel",
    "CollaborativeTrainingArguments",
    "CollaborativeTrainingResult",
    "InteractionGraph",
    "LightGCNPropagation",
    "build_graph_for",
    "build_interaction_graph",
    "evaluate_collaborative",
    "propagate_autograd",
    "propagate_layers",
    "sample_negatives",
    "train_collaborative",
]
