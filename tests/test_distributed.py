"""Two-process training with `accelerate launch` (gloo on CPU) must match one process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from scripts.tiny_setup import make_tiny_model, make_tiny_split, make_tiny_tokenizer

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "tests" / "scripts" / "train_tiny.py"
GLOBAL_BATCH_SIZE = 4


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_training(command: list[str], output_dir: Path) -> dict:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return json.loads((output_dir / "metrics.json").read_text())


@pytest.fixture(scope="module")
def saved_components(tmp_path_factory, tiny_t5_tokenizer_dir):
    folder = tmp_path_factory.mktemp("components")
    split = make_tiny_split(num_users=12, num_items=30)
    tokenizer = make_tiny_tokenizer(tiny_t5_tokenizer_dir, split)
    model = make_tiny_model(tokenizer)
    split.save_pretrained(folder / "data")
    tokenizer.save_pretrained(folder / "tokenizer")
    model.save_pretrained(folder / "model")
    return folder


def script_arguments(components: Path, output_dir: Path, per_device_batch_size: int) -> list[str]:
    return [
        str(SCRIPT),
        "--model_dir",
        str(components / "model"),
        "--tokenizer_dir",
        str(components / "tokenizer"),
        "--data_dir",
        str(components / "data"),
        "--output_dir",
        str(output_dir),
        "--per_device_train_batch_size",
        str(per_device_batch_size),
        "--max_steps",
        "4",
    ]


def test_two_processes_match_one(tmp_path, saved_components):
    single_dir, double_dir = tmp_path / "one_process", tmp_path / "two_processes"
    single = run_training(
        [sys.executable, *script_arguments(saved_components, single_dir, GLOBAL_BATCH_SIZE)], single_dir
    )
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
    ]
    double = run_training(
        [*launch, *script_arguments(saved_components, double_dir, GLOBAL_BATCH_SIZE // 2)], double_dir
    )

    assert single["num_processes"] == 1
    assert double["num_processes"] == 2
    assert [row["step"] for row in double["losses"]] == [1, 2, 3, 4]
    for one, two in zip(single["losses"], double["losses"], strict=True):
        for key in ("loss", "positive_loss", "negative_loss"):
            assert two[key] == pytest.approx(one[key], abs=1e-5), (one["step"], key)
    for key in ("eval_hr@10", "eval_ndcg@10", "eval_ndcg@20", "eval_ndcg@30"):
        assert double["metrics"][key] == pytest.approx(single["metrics"][key], abs=1e-6), key

    single_weights = load_file(single_dir / "final_model.safetensors")
    double_weights = load_file(double_dir / "final_model.safetensors")
    initial = load_file(saved_components / "model" / "model.safetensors")
    assert single_weights.keys() == double_weights.keys()
    for name, tensor in single_weights.items():
        torch.testing.assert_close(double_weights[name], tensor, rtol=0, atol=5e-5, msg=name)
    moved = [
        name for name in initial if name in single_weights and not torch.equal(initial[name], single_weights[name])
    ]
    assert moved, "training changed no weight, so the comparison proves nothing"
