"""Prompt templates that put user and item ID tokens into text for the TokenRec LLM backbone.

A template is a plain string with a `{user}` placeholder and, optionally, a `{history}` placeholder. The tokenizer fills
`{user}` with the user's K ID tokens and `{history}` with the ID tokens of the user's past items, one item after the
other, separated by a space.

The default set has 11 templates written for this package. Ten are used in training and the last one is held out as
the "unseen prompt" for evaluation. The TokenRec paper (Qu et al.) keeps one template out of training in the same way,
to test whether the model generalizes to an instruction it never saw. Five templates contain only the user's ID tokens
and six contain the user and their (shuffled) history.

Placeholder rule: SentencePiece tokenizers with a Metaspace pre-tokenizer, such as T5's, prepend `▁` to every piece of
text that follows an added token. When that text starts with punctuation (`<v3-2>, ...`), the vocabulary has no piece
for `▁,` and the tokenizer emits a lone `▁` token before the comma. So a placeholder must be followed by whitespace and
a word, or end the template. `validate_template` enforces this.
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence

USER_PLACEHOLDER = "user"
HISTORY_PLACEHOLDER = "history"
HISTORY_SEPARATOR = " "

DEFAULT_TEMPLATES: tuple[str, ...] = (
    # User ID tokens only.
    "What will user {user} like next?",
    "Which item would user {user} enjoy the most?",
    "Please recommend an item that user {user} will like.",
    "Help me decide what user {user} would pick next.",
    "Suggest one more item for user {user} to enjoy.",
    # User ID tokens and the history's item ID tokens.
    "User {user} has interacted with {history} before. What should come next?",
    "Given that user {user} liked {history} in the past, recommend the next item.",
    "The items {history} are in the history of user {user} and we need the next one.",
    "Based on the items {history} that user {user} bought, predict what they buy next.",
    "User {user} watched or played {history} and now wants one new item. Which one fits?",
    # Held out of training: the unseen prompt.
    "Here is user {user} with past items {history} in the history. Summarize the preferences and pick the next item.",
)
DEFAULT_UNSEEN_TEMPLATE_ID = 10

__all__ = [
    "DEFAULT_TEMPLATES",
    "DEFAULT_UNSEEN_TEMPLATE_ID",
    "HISTORY_SEPARATOR",
    "format_prompt",
    "make_rng",
    "select_history",
    "template_uses_history",
    "validate_template",
]


def _placeholders(template: str) -> list[tuple[str, int]]:
    """Return (name, end offset) for each `{name}` field of `template`, raising on malformed braces."""
    fields = []
    offset = 0
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise ValueError(
            f"Prompt template {template!r} has unbalanced braces ({error}). Write `{{{{` for a brace."
        ) from error
    for literal, name, format_spec, conversion in parsed:
        offset += len(literal)
        if name is None:
            continue
        if format_spec or conversion:
            raise ValueError(
                f"Prompt template {template!r} uses a format spec or conversion on {{{name}}}; only plain "
                "`{user}` and `{history}` placeholders are supported."
            )
        offset += len(name) + 2
        fields.append((name, offset))
    return fields


def validate_template(template: str) -> str:
    """Check that `template` is a usable prompt template and return it unchanged.

    Args:
        template: A string with exactly one `{user}` placeholder and at most one `{history}` placeholder.

    Returns:
        The template.

    Raises:
        ValueError: When the template is not a string, lacks `{user}`, repeats a placeholder, uses another
            placeholder name, or puts punctuation right after a placeholder.
    """
    if not isinstance(template, str):
        raise ValueError(f"A prompt template must be a string, got {type(template).__name__}: {template!r}.")

    fields = _placeholders(template)
    names = [name for name, _ in fields]
    unknown = sorted({name for name in names if name not in (USER_PLACEHOLDER, HISTORY_PLACEHOLDER)})
    if unknown:
        raise ValueError(
            f"Prompt template {template!r} has unknown placeholders {unknown}; the supported ones are "
            "['history', 'user']."
        )
    if USER_PLACEHOLDER not in names:
        raise ValueError(
            f"Prompt template {template!r} has no {{user}} placeholder. Every template must contain {{user}}, where "
            "the user's ID tokens go; add {history} too to include the user's past items."
        )
    for name in (USER_PLACEHOLDER, HISTORY_PLACEHOLDER):
        if names.count(name) > 1:
            raise ValueError(
                f"Prompt template {template!r} contains {{{name}}} {names.count(name)} times; use it once."
            )

    for name, end in fields:
        following = template[end:]
        stripped = following.lstrip()
        if not stripped:
            continue
        if following == stripped or not stripped[0].isalnum():
            raise ValueError(
                f"Prompt template {template!r} has {following[:1]!r} right after {{{name}}}. Follow a placeholder "
                "with a space and a word, or end the template with it: T5-style tokenizers encode punctuation "
                "right after an ID token with a stray '▁' token."
            )
    return template


def template_uses_history(template: str) -> bool:
    """Return whether `template` has a `{history}` placeholder."""
    return any(name == HISTORY_PLACEHOLDER for name, _ in _placeholders(template))


def make_rng(rng: random.Random | int | None) -> random.Random:
    """Return `rng` itself, a `random.Random` seeded with the integer `rng`, or a fresh unseeded one for `None`."""
    if isinstance(rng, random.Random):
        return rng
    if rng is None:
        return random.Random()
    if isinstance(rng, bool) or not isinstance(rng, int):
        raise ValueError(f"rng must be a random.Random, an integer seed or None, got {type(rng).__name__}: {rng!r}.")
    return random.Random(rng)


def select_history(
    history: Sequence[object],
    max_items: int | None = None,
    rng: random.Random | None = None,
    shuffle: bool = True,
) -> list[object]:
    """Keep the most recent `max_items` entries of `history` (oldest first) and shuffle them.

    Args:
        history: Past items of one user, oldest first.
        max_items: How many of the most recent items to keep. `None` keeps all.
        rng: Random generator for the shuffle. Required when `shuffle=True`.
        shuffle: Whether to shuffle the kept items, so the backbone does not rely on their order.

    Returns:
        A new list with the kept items.
    """
    if max_items is not None and max_items < 0:
        raise ValueError(f"max_items must be >= 0 or None, got {max_items}.")
    kept = list(history)
    if max_items is not None:
        kept = kept[max(len(kept) - max_items, 0) :] if max_items > 0 else []
    if shuffle:
        if rng is None:
            raise ValueError("select_history needs an rng when shuffle=True; pass random.Random(seed).")
        rng.shuffle(kept)
    return kept


def format_prompt(template: str, user_tokens: str, history_tokens: Sequence[str] = ()) -> str:
    """Fill `template` with the user's token string and the history's token strings.

    Args:
        template: A template accepted by `validate_template`.
        user_tokens: The user's ID tokens as one string, for example `"<u1-5><u2-0><u3-17>"`.
        history_tokens: One token string per history item. Ignored by templates without `{history}`.

    Returns:
        The prompt text.

    Raises:
        ValueError: When the template needs a history and `history_tokens` is empty.
    """
    if template_uses_history(template) and not history_tokens:
        raise ValueError(
            f"Prompt template {template!r} needs a history, but the history is empty. Pass at least one item, "
            "or choose a template without {history}."
        )
    return template.format(user=user_tokens, history=HISTORY_SEPARATOR.join(history_tokens))
