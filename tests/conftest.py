"""Shared fixtures: offline Hub settings, the optional real-data folder, and a tokenizer trained in the test session."""

from __future__ import annotations

import os

# Without these, every Hub call in a test retries for about 30 s before failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("TOKENREC_SHARED_DIR", REPO_ROOT.parent / "shared")).resolve()
SHARED_DATA_DIR = SHARED_DIR / "data"
SHARED_T5_DIR = SHARED_DIR / "models" / "t5-small"

# A few hundred words of recommendation-prompt English, enough for a small Unigram vocabulary.
_CORPUS_WORDS = (
    "the a an user users item items like likes liked will would what which who whom can could you help me decide "
    "recommend recommendation next song songs artist artists movie movies product products bought watched listened "
    "history interacted interactions with has have had before after according to these those this that preferences "
    "describe predict choose pick suggest enjoy taste for of in on and or is are was be been being given based "
    "please tell us them their his her its one two three more most some any all many few list following previous"
).split()


def _training_sentences() -> list[str]:
    sentences = []
    for start in range(len(_CORPUS_WORDS)):
        for width in (4, 7, 11):
            words = [_CORPUS_WORDS[(start + offset * 3) % len(_CORPUS_WORDS)] for offset in range(width)]
            sentences.append(" ".join(words) + ("?" if width == 7 else "."))
    return sentences


@pytest.fixture(scope="session")
def tiny_t5_tokenizer_dir(tmp_path_factory) -> Path:
    """Train a small T5-style Unigram tokenizer (Metaspace, `</s>` appended, pad=0, eos=1, unk=2) and save it.

    It replaces the real t5-small vocabulary on a fresh clone, where the shared folder is absent.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import T5Tokenizer

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=300, special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", shrinking_factor=0.9
    )
    tokenizer.train_from_iterator(_training_sentences(), trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )

    wrapped = T5Tokenizer(
        tokenizer_object=tokenizer, extra_ids=0, eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    folder = tmp_path_factory.mktemp("tiny_t5_tokenizer")
    wrapped.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The folder with the real LastFM, ML1M and Beauty data; tests that use it are skipped when it is absent."""
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA_DIR}; set TOKENREC_SHARED_DIR to run these tests")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def t5_small_dir() -> Path:
    """The real t5-small tokenizer and config (no weights); tests that use it are skipped when it is absent."""
    if not (SHARED_T5_DIR / "tokenizer.json").is_file():
        pytest.skip(f"t5-small tokenizer not found at {SHARED_T5_DIR}; set TOKENREC_SHARED_DIR to run these tests")
    return SHARED_T5_DIR


def pytest_collection_modifyitems(config, items):
    if SHARED_DATA_DIR.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real datasets not found at {SHARED_DATA_DIR}")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)
