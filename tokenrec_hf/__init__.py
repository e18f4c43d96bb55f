"""tokenrec_hf: TokenRec (ID tokenization and generative retrieval for LLM-based recommendation) for Hugging Face.

The pipeline has four stages, each with its own module:

1. `tokenrec_hf.collaborative`: LightGCN or MF user and item embeddings learned from interactions.
2. `tokenrec_hf.quantization`: the MQ-Tokenizers that turn each embedding into K discrete codes.
3. `TokenRecTokenizer` and `TokenRecForRetrieval`: a T5 backbone reads prompts of ID tokens and projects its hidden
   state onto the collaborative item space, trained by `TokenRecTrainer` with the cosine-margin loss.
4. `TokenRecForRetrieval.recommend`: top-K items by cosine similarity, in one forward pass.
"""

from transformers import AutoConfig, AutoModel, AutoTokenizer

from .collaborative import (
    CollaborativeConfig,
    CollaborativeModel,
    CollaborativeTrainingArguments,
    train_collaborative,
)
from .configuration_tokenrec import TokenRecConfig
from .data import InteractionData, load_named_dataset
from .data_collator import TokenRecDataCollator
from .evaluation import evaluate_full_ranking, full_ranking_top_k
from .losses import CosineMarginLoss
from .modeling_tokenrec import TokenRecForRetrieval, TokenRecPreTrainedModel, apply_lora, register_auto_classes
from .quantization import MQTokenizer, MQTokenizerConfig, MQTokenizerTrainingArguments, train_mq_tokenizer
from .tokenization_tokenrec import TokenRecTokenizer
from .trainer import TokenRecTrainer
from .training_args import TokenRecTrainingArguments
from .version import __version__

register_auto_classes()
AutoTokenizer.register(TokenRecConfig, tokenizer_class=TokenRecTokenizer, exist_ok=True)
AutoConfig.register(CollaborativeConfig.model_type, CollaborativeConfig, exist_ok=True)
AutoModel.register(CollaborativeConfig, CollaborativeModel, exist_ok=True)
AutoConfig.register(MQTokenizerConfig.model_type, MQTokenizerConfig, exist_ok=True)
AutoModel.register(MQTokenizerConfig, MQTokenizer, exist_ok=True)

__all__ = [
    "CollaborativeConfig",
    "CollaborativeModel",
    "CollaborativeTrainingArguments",
    "CosineMarginLoss",
    "InteractionData",
    "MQTokenizer",
    "MQTokenizerConfig",
    "MQTokenizerTrainingArguments",
    "TokenRecConfig",
    "TokenRecDataCollator",
    "TokenRecForRetrieval",
    "TokenRecPreTrainedModel",
    "TokenRecTokenizer",
    "TokenRecTrainer",
    "TokenRecTrainingArguments",
    "__version__",
    "apply_lora",
    "evaluate_full_ranking",
    "full_ranking_top_k",
    "load_named_dataset",
    "register_auto_classes",
    "train_collaborative",
    "train_mq_tokenizer",
]
