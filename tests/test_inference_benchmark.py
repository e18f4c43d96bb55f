"""The inference benchmark runs on a tiny backbone and ends with its JSON line."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import T5Config, T5ForConditionalGeneration

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "inference.py"


@pytest.mark.parametrize("pooling", ["encoder_mean", "decoder"])
def test_inference_benchmark_reports_speedup(pooling):
    command = [sys.executable, str(SCRIPT), "--preset", "tiny", "--num-users", "6", "--batch-size", "3"]
    command += ["--repeats", "1", "--synthetic", "--no-progress", "--device", "cpu", "--query-pooling", pooling]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"})
    assert result.returncode == 0, result.stderr[-2000:]

    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["query_pooling"] == pooling
    assert figures["num_users"] == 6
    assert figures["tokenrec_ms_per_user"] > 0
    assert figures["beam_search_ms_per_user"] > 0
    assert figures["unconstrained_beam_search_ms_per_user"] > 0
    assert figures["speedup"] == pytest.approx(
        figures["beam_search_ms_per_user"] / figures["tokenrec_ms_per_user"], rel=0.01
    )


def test_prefix_tree_keeps_beams_on_items():
    spec = importlib.util.spec_from_file_location("inference_benchmark", SCRIPT)
    benchmark = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(benchmark)

    # 12 items with 3-token codes over token ids 10..29, in a vocabulary of 40.
    generator = torch.Generator().manual_seed(0)
    codes = 10 + torch.randint(0, 20, (12, 3), generator=generator)
    config = T5Config(vocab_size=40, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8, decoder_start_token_id=0)
    tree = benchmark.build_prefix_tree(codes, config.eos_token_id)
    assert tree[()] == sorted(set(codes[:, 0].tolist()))
    assert tree[tuple(codes[0].tolist())] == [config.eos_token_id]

    torch.manual_seed(0)
    model = T5ForConditionalGeneration(config).eval()
    output = model.generate(
        input_ids=torch.tensor([[5, 6, 7, 1], [8, 9, 1, 0]]),
        attention_mask=torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        num_beams=5,
        num_return_sequences=5,
        max_new_tokens=4,
        min_new_tokens=4,
        prefix_allowed_tokens_fn=benchmark.prefix_allowed_tokens(tree),
    )
    real_codes = {tuple(code) for code in codes.tolist()}
    generated = {tuple(row[1:4]) for row in output.tolist()}
    assert generated <= real_codes
    assert all(row[4] == config.eos_token_id for row in output.tolist())
