"""The inference benchmark runs on a tiny backbone and ends with its JSON line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    assert figures["tokenrec_ms_per_user"] > 0 and figures["beam_search_ms_per_user"] > 0
    assert figures["speedup"] == pytest.approx(
        figures["beam_search_ms_per_user"] / figures["tokenrec_ms_per_user"], rel=0.01
    )
