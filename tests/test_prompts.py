"""Tests for the prompt templates and the history selection in tokenrec_hf.prompts."""

from __future__ import annotations

import random

import pytest

from tokenrec_hf.prompts import (
    DEFAULT_TEMPLATES,
    DEFAULT_UNSEEN_TEMPLATE_ID,
    format_prompt,
    make_rng,
    select_history,
    template_uses_history,
    validate_template,
)


def test_default_templates_count_and_kinds():
    assert len(DEFAULT_TEMPLATES) == 11
    assert DEFAULT_UNSEEN_TEMPLATE_ID == 10
    user_only = [text for text in DEFAULT_TEMPLATES if not template_uses_history(text)]
    with_history = [text for text in DEFAULT_TEMPLATES if template_uses_history(text)]
    assert len(user_only) == 5
    assert len(with_history) == 6
    assert len(set(DEFAULT_TEMPLATES)) == 11


def test_default_templates_are_valid():
    for template in DEFAULT_TEMPLATES:
        assert validate_template(template) == template


def test_default_templates_do_not_copy_paper_wording():
    for template in DEFAULT_TEMPLATES:
        assert "I wonder what" not in template
        assert "According to what items" not in template
        assert "Can you help me decide" not in template


def test_template_without_user_placeholder():
    template = "Recommend something after {history} please"
    with pytest.raises(ValueError, match="no \\{user\\} placeholder") as error:
        validate_template(template)
    assert template in str(error.value)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("Hello {user} and {item}", "unknown placeholders \\['item'\\]"),
        ("{user} likes {user} things", "contains \\{user\\} 2 times"),
        ("Does {user}, like it?", "right after \\{user\\}"),
        ("User {user} bought {history}.", "right after \\{history\\}"),
        ("User {user}'s next item", "right after \\{user\\}"),
        ("User {user:>5} next", "format spec"),
        ("User {user} next {", "unbalanced braces"),
    ],
)
def test_invalid_templates(template, message):
    with pytest.raises(ValueError, match=message):
        validate_template(template)


def test_template_must_be_string():
    with pytest.raises(ValueError, match="must be a string"):
        validate_template(3)


def test_placeholder_at_end_is_valid():
    assert validate_template("Next item for {user}")
    assert validate_template("User {user} bought {history}")


def test_select_history_keeps_most_recent():
    history = list(range(10))
    kept = select_history(history, max_items=3, shuffle=False)
    assert kept == [7, 8, 9]


def test_select_history_shuffles_with_seed():
    history = list(range(20))
    first = select_history(history, rng=random.Random(3))
    second = select_history(history, rng=random.Random(3))
    assert first == second
    assert sorted(first) == history
    assert first != history


def test_select_history_edge_cases():
    assert select_history([1, 2, 3], max_items=0, shuffle=False) == []
    assert select_history([1, 2, 3], max_items=10, shuffle=False) == [1, 2, 3]
    with pytest.raises(ValueError, match="max_items must be >= 0"):
        select_history([1, 2], max_items=-1, shuffle=False)
    with pytest.raises(ValueError, match="needs an rng"):
        select_history([1, 2], shuffle=True)


def test_format_prompt_fills_placeholders():
    prompt = format_prompt("User {user} bought {history} before", "<u1-0><u2-1>", ["<v1-0><v2-0>", "<v1-1><v2-1>"])
    assert prompt == "User <u1-0><u2-1> bought <v1-0><v2-0> <v1-1><v2-1> before"


def test_format_prompt_keeps_escaped_braces():
    assert format_prompt("{{note}} for {user} now", "<u1-0>") == "{note} for <u1-0> now"


def test_format_prompt_empty_history():
    with pytest.raises(ValueError, match="needs a history, but the history is empty"):
        format_prompt("User {user} bought {history} before", "<u1-0>", [])
    assert format_prompt("What will {user} like", "<u1-0>", []) == "What will <u1-0> like"


def test_make_rng():
    generator = random.Random(0)
    assert make_rng(generator) is generator
    assert make_rng(5).random() == random.Random(5).random()
    assert isinstance(make_rng(None), random.Random)
    with pytest.raises(ValueError, match="rng must be"):
        make_rng("seed")


@pytest.mark.parametrize("max_items", [3, 4, 5, 6, 10])
def test_select_history_budget_above_length(max_items):
    history = [10, 11, 12, 13, 14]
    kept = select_history(history, max_items=max_items, shuffle=False)
    assert kept == history[max(len(history) - max_items, 0) :]
