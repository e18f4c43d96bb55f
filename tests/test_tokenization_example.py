"""Runs examples/train_tokenizers.py end to end on a tiny collaborative model."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import torch

from tokenrec_hf.collaborative import CollaborativeConfig, CollaborativeModel
from tokenrec_hf.data import InteractionData
from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "train_tokenizers.py"
NUM_USERS, NUM_ITEMS = 24, 30


def _load_example():
    spec = importlib.util.spec_from_file_location("train_tokenizers", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    # dataclasses looks the module up in sys.modules to resolve its string annotations.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _save_inputs(folder: Path) -> tuple[Path, Path]:
    torch.manual_seed(0)
    model = CollaborativeModel(
        CollaborativeConfig(architecture="mf", num_users=NUM_USERS, num_items=NUM_ITEMS, embedding_dim=8)
    )
    model.user_ids = [f"u{index}" for index in range(NUM_USERS)]
    model.item_ids = [f"i{index}" for index in range(NUM_ITEMS)]
    model.save_pretrained(folder / "collaborative")

    train = [[(user + offset) % NUM_ITEMS for offset in range(3)] for user in range(NUM_USERS)]
    data = InteractionData(
        name="toy",
        user_ids=model.user_ids,
        item_ids=model.item_ids,
        train=train,
        valid=[(user + 3) % NUM_ITEMS for user in range(NUM_USERS)],
        test=[(user + 4) % NUM_ITEMS for user in range(NUM_USERS)],
        unseen_users=[0, 5],
    )
    data.save_pretrained(folder / "data")
    return folder / "collaborative", folder / "data"


def test_train_tokenizers_example(tmp_path, tiny_t5_tokenizer_dir, capsys):
    collaborative_dir, data_dir = _save_inputs(tmp_path)
    example = _load_example()
    arguments = [
        "--collaborative_model", str(collaborative_dir),
        "--interaction_data", str(data_dir),
        "--base_tokenizer", str(tiny_t5_tokenizer_dir),
        "--save_directory", str(tmp_path / "tokenizer"),
        "--num_user_codebooks", "2", "--user_codebook_size", "4",
        "--num_item_codebooks", "3", "--item_codebook_size", "5",
        "--codebook_dim", "4",
        "--num_train_epochs", "3", "--train_batch_size", "8", "--validation_fraction", "0.2",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    tokenizer = example.main(arguments)

    loaded = TokenRecTokenizer.from_pretrained(tmp_path / "tokenizer")
    assert loaded.num_users == NUM_USERS - 2
    assert "u0" not in loaded.user_ids
    assert "u5" not in loaded.user_ids
    assert loaded.num_items == NUM_ITEMS
    assert (loaded.num_user_codebooks, loaded.user_codebook_size) == (2, 4)
    assert (loaded.num_item_codebooks, loaded.item_codebook_size) == (3, 5)
    assert torch.equal(loaded.item_codes, tokenizer.item_codes)

    # The unseen users are tokenized later by the frozen user MQ-Tokenizer.
    collaborative = CollaborativeModel.from_pretrained(collaborative_dir)
    loaded.add_users(collaborative.user_representations[[0, 5]], ["u0", "u5"])
    assert loaded.user_token_string("u5").startswith("<u1-")

    plots = tmp_path / "tokenizer_plots"
    assert (plots / "user_codebook_usage.png").stat().st_size > 0
    assert (plots / "item_codebook_usage.png").stat().st_size > 0
    metrics = json.loads((plots / "tokenizer_metrics.json").read_text())
    assert metrics["user"]["num_entities"] == NUM_USERS - 2
    assert metrics["item"]["num_entities"] == NUM_ITEMS

    output = capsys.readouterr().out
    assert "collisions" in output
    assert json.loads(output.strip().splitlines()[-1]).keys() == {"user", "item"}
