import json

import pytest
import torch
from safetensors.torch import load_file

from tokenrec_hf.utils import (
    HubUnreachableError,
    atomic_directory,
    atomic_write_json,
    check_artifact_version,
    load_json,
    resolve_pretrained_folder,
    save_safetensors_atomic,
)


def test_atomic_write_json_round_trip(tmp_path):
    path = tmp_path / "sub" / "config.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    assert load_json(path) == {"a": [1, 2], "b": 1}
    assert [p.name for p in path.parent.iterdir()] == ["config.json"]


def test_load_json_corrupted_names_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"a": ')
    with pytest.raises(ValueError, match=r"config\.json is not valid JSON"):
        load_json(path)


def test_atomic_directory_failure_keeps_old(tmp_path):
    target = tmp_path / "artifact"
    with atomic_directory(target) as staging:
        (staging / "weights.txt").write_text("old")

    with pytest.raises(RuntimeError, match="interrupted"):
        with atomic_directory(target) as staging:
            (staging / "weights.txt").write_text("half-written")
            raise RuntimeError("interrupted")

    assert (target / "weights.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def test_atomic_directory_keeps_other_entries(tmp_path):
    target = tmp_path / "artifact"
    with atomic_directory(target) as staging:
        (staging / "model.txt").write_text("model")
        (staging / "shared.txt").write_text("old")
        (staging / "sub").mkdir()
        (staging / "sub" / "stale.txt").write_text("stale")
    with atomic_directory(target) as staging:
        (staging / "tokenizer.txt").write_text("tokenizer")
        (staging / "shared.txt").write_text("new")
        (staging / "sub").mkdir()
        (staging / "sub" / "fresh.txt").write_text("fresh")

    assert sorted(p.name for p in target.iterdir()) == ["model.txt", "shared.txt", "sub", "tokenizer.txt"]
    assert (target / "shared.txt").read_text() == "new"
    assert sorted(p.name for p in (target / "sub").iterdir()) == ["fresh.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifact"]


def test_save_safetensors_atomic(tmp_path):
    path = tmp_path / "codes.safetensors"
    save_safetensors_atomic({"codes": torch.arange(6).view(2, 3)}, path, metadata={"format": "pt"})
    assert torch.equal(load_file(path)["codes"], torch.arange(6).view(2, 3))


def test_newer_version_warns(caplog):
    from transformers.utils import logging

    logging.enable_propagation()
    try:
        with caplog.at_level("WARNING"):
            check_artifact_version("999.0.0", "Test artifact")
    finally:
        logging.disable_propagation()
    assert "newer than the installed" in caplog.text


def test_resolve_missing_file_lists_contents(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({}))
    with pytest.raises(FileNotFoundError, match=r"missing \['model.safetensors'\]"):
        resolve_pretrained_folder(tmp_path, ["config.json", "model.safetensors"], artifact="Model")


def test_resolve_offline_hub_id_explains_local_folder(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError, match="pass its local folder"):
        resolve_pretrained_folder("someone/not-in-cache-tokenrec", artifact="TokenRec model")


def test_resolve_missing_local_path():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_pretrained_folder("./no/such/folder", artifact="Model")


def test_atomic_writes_use_default_permissions(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "config.json", {"a": 1})
        save_safetensors_atomic({"x": torch.zeros(2)}, tmp_path / "weights.safetensors")
        with atomic_directory(tmp_path / "artifact") as staging:
            (staging / "file.txt").write_text("x")
    finally:
        os.umask(mask)

    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "weights.safetensors").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "artifact").stat().st_mode & 0o777 == 0o755


def test_resolve_lists_missing_file_once(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing \['a.json'\]; it contains \[\]"):
        resolve_pretrained_folder(tmp_path, ["a.json", "a.json"], artifact="Tokenizer")
