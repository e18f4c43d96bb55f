"""`benchmarks/seed_spread.py`: mean and sample standard deviation over run folders."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "seed_spread.py"
METRICS = ("hr@10", "hr@20", "hr@30", "ndcg@10", "ndcg@20", "ndcg@30")


def load_script():
    spec = importlib.util.spec_from_file_location("seed_spread", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(folder: Path, history_hr20: float, with_unseen: bool = True) -> Path:
    folder.mkdir(parents=True)
    test = {"tokenrec_history": dict.fromkeys(METRICS, 0.05), "lightgcn": dict.fromkeys(METRICS, 0.12)}
    test["tokenrec_history"]["hr@20"] = history_hr20
    if with_unseen:
        test["tokenrec_unseen"] = dict.fromkeys(METRICS, 0.04)
    (folder / "metrics.json").write_text(json.dumps({"test": test}))
    return folder


def test_spread_matches_statistics(tmp_path, capsys):
    runs = [write_run(tmp_path / f"seed{index}", value) for index, value in enumerate((0.07, 0.06, 0.08))]

    result = load_script().main([str(folder) for folder in runs])

    history = result["spread"]["tokenrec_history"]["hr@20"]
    assert history["mean"] == pytest.approx(0.07)
    assert history["std"] == pytest.approx(statistics.stdev([0.07, 0.06, 0.08]))
    assert history["values"] == [0.07, 0.06, 0.08]
    assert result["spread"]["lightgcn"]["ndcg@20"]["std"] == 0.0

    lines = capsys.readouterr().out.strip().splitlines()
    assert json.loads(lines[-1]) == result
    assert "| tokenrec_history | 0.0500 ± 0.0000 | 0.0700 ± 0.0100 |" in "\n".join(lines)


def test_rows_missing_from_a_run_are_left_out(tmp_path):
    runs = [write_run(tmp_path / "a", 0.07), write_run(tmp_path / "b", 0.06, with_unseen=False)]

    result = load_script().main([str(folder) for folder in runs])

    assert sorted(result["spread"]) == ["lightgcn", "tokenrec_history"]


def test_unfinished_run_is_rejected(tmp_path):
    finished = write_run(tmp_path / "a", 0.07)
    (tmp_path / "b").mkdir()

    with pytest.raises(SystemExit, match=r"b/metrics\.json not found\. Pass the output folder of a finished"):
        load_script().main([str(finished), str(tmp_path / "b")])


def test_single_run_is_rejected(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load_script().main([str(write_run(tmp_path / "a", 0.07))])
    assert "a spread needs at least two" in capsys.readouterr().err
