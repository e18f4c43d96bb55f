"""Tests for benchmarks/quantization.py on a tiny saved LightGCN model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from tokenrec_hf.collaborative import CollaborativeConfig, CollaborativeModel, build_interaction_graph
from tokenrec_hf.quantization import MQTokenizer

BENCHMARK_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "quantization.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("quantization_benchmark", BENCHMARK_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def saved_lightgcn(tmp_path) -> Path:
    generator = torch.Generator().manual_seed(0)
    config = CollaborativeConfig(architecture="lightgcn", num_users=30, num_items=50, embedding_dim=16)
    model = CollaborativeModel(config)
    model.reset_parameters(generator)
    users = torch.randint(30, (300,), generator=generator)
    items = torch.randint(50, (300,), generator=generator)
    model.propagate(build_interaction_graph(users, items, 30, 50))
    folder = tmp_path / "lightgcn"
    model.save_pretrained(folder)
    return folder


def test_benchmark_ends_with_json_line(tmp_path, saved_lightgcn, capsys):
    benchmark = load_benchmark()

    benchmark.main(
        [
            "--dataset", "tiny",
            "--embeddings", str(saved_lightgcn),
            "--output_dir", str(tmp_path / "out"),
            "--num_codebooks", "2",
            "--codebook_size", "4",
            "--epochs", "2",
            "--disable_tqdm",
        ]
    )  # fmt: skip

    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert {"item", "user", "variants"} <= set(summary)
    for side, rows in (("item", 50), ("user", 30)):
        assert summary[side]["num_entities"] == rows
        assert {"collision_rate", "min_usage", "perplexity"} <= set(summary[side])
        assert summary[side]["codes_lost_on_reload"] == 0
        assert all(0.0 <= value <= 1.0 for layers in summary[side]["dead_units"] for value in layers)
        assert sorted(summary["variants"][side]) == ["default", "no_mask", "one_way", "residual"]
    assert summary["variants"]["item"]["one_way"]["codebook_size"] == 8
    assert summary["variants"]["item"]["one_way"]["num_codebooks"] == 1
    assert (tmp_path / "out" / "item-default-usage.png").is_file()
    assert (tmp_path / "out" / "user-residual-training.png").is_file()
    assert MQTokenizer.from_pretrained(tmp_path / "out" / "item_tokenizer").config.num_codebooks == 2


def test_benchmark_rejects_unknown_variant():
    benchmark = load_benchmark()

    with pytest.raises(SystemExit):
        benchmark.parse_args(["--dataset", "lastfm", "--variants", "default,product"])
