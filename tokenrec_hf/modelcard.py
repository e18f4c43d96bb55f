"""Model cards for saved TokenRec models: dataset, evaluation protocol, metrics, backbone origin and usage."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from transformers.utils import logging

from .utils import atomic_write_text

if TYPE_CHECKING:
    from .modeling_tokenrec import TokenRecForRetrieval

logger = logging.get_logger(__name__)

EVALUATION_PROTOCOL = (
    "Leave-one-out split: each user's last item is the test target and the second to last the validation target. "
    "Every stage trains on training interactions only, and model selection uses the validation targets. "
    "Ranking is over the full item catalog, without sampled candidates. Items in the user's history score minus "
    "infinity before the top-K is taken. HR@K and NDCG@K have one relevant item per user and are fractions in [0, 1]."
)


@dataclass
class TokenRecModelCardData:
    """
    Facts recorded in a TokenRec model card. They are stored in the README's YAML header under `tokenrec`, so
    `from_pretrained` restores them.

    Args:
        dataset_name: Name of the training dataset, for example `"lastfm"`.
        dataset_id: Hub dataset id when the data comes from the Hub.
        metrics: Test metrics measured with the protocol above, for example `{"hr@20": 0.08, "ndcg@20": 0.04}`.
        validation_metrics: Validation metrics of the selected checkpoint.
        num_users: Users in the dataset.
        seen_users_only: Whether `metrics` cover seen users only (unseen users held out of training reported apart).
        unseen_user_metrics: Metrics of users held out of every training stage, when any were.
        training: Free-form training facts, for example `{"epochs": 20, "learning_rate": 1e-3}`.
        language: Language of the prompts.
        license: License of the weights.
    """

    dataset_name: str | None = None
    dataset_id: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    validation_metrics: dict[str, float] = field(default_factory=dict)
    num_users: int | None = None
    seen_users_only: bool = True
    unseen_user_metrics: dict[str, float] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    language: str = "en"
    license: str | None = None

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TokenRecModelCardData:
        """Build card data from a dict, ignoring keys this version does not know."""
        known = {item.name for item in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


def _format_metrics_table(metrics: dict[str, float]) -> str:
    if not metrics:
        return "Not evaluated yet: no metrics were recorded when this model was saved.\n"
    names = sorted(metrics)
    header = "| " + " | ".join(names) + " |"
    separator = "|" + "|".join(" ---: " for _ in names) + "|"
    values = "| " + " | ".join(f"{float(metrics[name]):.4f}" for name in names) + " |"
    return "\n".join([header, separator, values]) + "\n"


def render_model_card(model: TokenRecForRetrieval, card_data: TokenRecModelCardData | None = None) -> str:
    """
    Render the README of a saved TokenRec model.

    Args:
        model: The model being saved. Its config gives the architecture and the backbone's origin.
        card_data: Dataset, metrics and training facts. Defaults to `model.model_card_data`.

    Returns:
        The README text: a YAML header for the Hub, then Markdown.
    """
    card_data = card_data if card_data is not None else model.model_card_data
    config = model.config
    backbone = config.backbone_config

    if config.backbone_pretrained:
        origin = f"pretrained weights from `{config.backbone_name_or_path}`"
    else:
        source = f" (config from `{config.backbone_name_or_path}`)" if config.backbone_name_or_path else ""
        origin = f"**random initialization**{source}; no pretrained language-model weights were used"

    header: dict[str, Any] = {
        "library_name": "tokenrec_hf",
        "language": card_data.language,
        "tags": ["recommendation", "generative-retrieval", "tokenrec", "t5"],
        "pipeline_tag": "feature-extraction",
        "tokenrec": asdict(card_data),
    }
    if card_data.license:
        header["license"] = card_data.license
    if card_data.dataset_id:
        header["datasets"] = [card_data.dataset_id]
    if config.backbone_pretrained and config.backbone_name_or_path:
        header["base_model"] = config.backbone_name_or_path

    dataset = card_data.dataset_name or card_data.dataset_id or "not recorded"
    users = f"{card_data.num_users} users, " if card_data.num_users is not None else ""
    unseen = ""
    if card_data.unseen_user_metrics:
        unseen = "\nUsers held out of every training stage (unseen users):\n\n" + _format_metrics_table(
            card_data.unseen_user_metrics
        )
    elif card_data.seen_users_only:
        unseen = "\nNo users were held out of training, so there are no unseen-user metrics.\n"
    validation = ""
    if card_data.validation_metrics:
        validation = "\nValidation (model selection):\n\n" + _format_metrics_table(card_data.validation_metrics)
    training = ""
    if card_data.training:
        training = (
            "\n## Training\n\n"
            + "\n".join(f"- {key}: {value}" for key, value in sorted(card_data.training.items()))
            + "\n"
        )
    scope = "seen users" if card_data.seen_users_only else "all users"

    body = f"""
# TokenRec generative retrieval model

This model recommends items with TokenRec (Qu et al., "Learning to Tokenize ID for LLM-based Generative
Recommendations"). A T5 backbone reads a prompt in which users and items are written as ID tokens from the
MQ-Tokenizers. A projection MLP maps the pooled hidden state to a query, and the query is compared by cosine
similarity with the collaborative representation of every catalog item. Recommending is one forward pass and a
top-K, without autoregressive decoding.

- Dataset: {dataset} ({users}{config.num_items} items in the retrieval table)
- Backbone: T5 with d_model={backbone.d_model}, {backbone.num_layers} encoder layers, {backbone.num_heads} heads,
  vocabulary of {config.vocab_size} tokens (text tokens plus ID tokens); {origin}
- Query pooling: `{config.query_pooling}`; projection {backbone.d_model} -> {config.projection_hidden_sizes[0]} ->
  {config.projection_hidden_sizes[1]} -> {config.collaborative_dim}
- Item tokens: K={config.num_item_codebooks}, L={config.item_codebook_size}; user tokens:
  K={config.num_user_codebooks}, L={config.user_codebook_size}
- Loss: cosine margin loss, margin={config.margin}, {config.num_negatives} negative(s) per positive
- Saved with tokenrec_hf {config.tokenrec_hf_version}

## Evaluation

{EVALUATION_PROTOCOL}

Test metrics ({scope}):

{_format_metrics_table(card_data.metrics)}{validation}{unseen}{training}
## Usage

```python
from tokenrec_hf import TokenRecForRetrieval, TokenRecTokenizer

model = TokenRecForRetrieval.from_pretrained("path/or/hub-id")
tokenizer = TokenRecTokenizer.from_pretrained("path/or/hub-id")

# Known users by raw id, with the raw ids of their past items (excluded from the results).
recommendations = model.recommend(tokenizer, users=["42"], histories=[["7", "19", "311"]], top_k=20)
print(recommendations.item_ids[0], recommendations.scores[0])
```
"""
    return "---\n" + yaml.safe_dump(header, sort_keys=True) + "---\n" + body


def write_model_card(
    model: TokenRecForRetrieval, path: str | os.PathLike, card_data: TokenRecModelCardData | None = None
) -> None:
    """Write the rendered model card of `model` to `path` atomically (see [`render_model_card`])."""
    atomic_write_text(path, render_model_card(model, card_data))


def load_model_card_data(folder: str | os.PathLike) -> TokenRecModelCardData:
    """
    Read the card data stored in the YAML header of `folder/README.md`.

    Returns empty card data, with a warning, when the README is missing or its header cannot be read.
    """
    readme = Path(folder) / "README.md"
    if not readme.is_file():
        return TokenRecModelCardData()
    text = readme.read_text(encoding="utf-8")
    if not text.startswith("---\n"):
        return TokenRecModelCardData()
    try:
        header = yaml.safe_load(text[4 : text.index("\n---\n", 4)])
    except (ValueError, yaml.YAMLError) as error:
        logger.warning(f"Could not read the model card header of {readme} ({error}); its card data is ignored.")
        return TokenRecModelCardData()
    values = header.get("tokenrec") if isinstance(header, dict) else None
    if not isinstance(values, dict):
        return TokenRecModelCardData()
    return TokenRecModelCardData.from_dict(values)


__all__ = [
    "EVALUATION_PROTOCOL",
    "TokenRecModelCardData",
    "load_model_card_data",
    "render_model_card",
    "write_model_card",
]
