"""Atomic writes for artifacts, so that an interrupted save never leaves a half-written file or folder."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file


def _fsync_directory(path: Path) -> None:
    # NOTE: directory fsync is a no-op on platforms that cannot open directories (Windows).
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def apply_default_permissions(path: str | os.PathLike, directory: bool = False) -> None:
    """Give a file or folder made by `tempfile` (mode 0600 or 0700) the mode a plain `open` or `mkdir` would give."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_current_umask())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        apply_default_permissions(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    """Serialize `obj` as UTF-8 JSON (sorted keys) and write it atomically."""
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, ensure_ascii=False) + "\n")


def save_safetensors_atomic(
    tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None
) -> None:
    """Save `tensors` as a safetensors file through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
        save_file(contiguous, tmp_name, metadata=metadata)
        apply_default_permissions(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def load_json(path: str | os.PathLike, what: str = "file") -> Any:
    """Read a JSON file, raising an error that names the file when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The {what} {path} is missing. Save the artifact again with `save_pretrained`.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(
            f"The {what} {path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}). "
            "The file is corrupted: save the artifact again with `save_pretrained`."
        ) from error


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder, then move what the block wrote into `target` when it finishes without error.

    Each top-level file or subfolder written in the staging folder replaces its counterpart in `target` with one
    `os.replace`, so no reader ever sees a half-written file. Entries of `target` that the block does not write are
    kept, which lets a model and its tokenizer be saved into the same folder one after the other, as in transformers.
    If the block raises, `target` is left untouched and the staging folder is deleted.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    apply_default_permissions(staging, directory=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

    try:
        if not target.exists():
            os.replace(staging, target)
        else:
            if not target.is_dir():
                raise NotADirectoryError(f"Cannot save into {target}: it is a file. Pass a folder path instead.")
            for entry in sorted(staging.iterdir()):
                destination = target / entry.name
                if entry.is_dir() and destination.exists():
                    # Swap whole subfolders so that a nested artifact is never a mix of two saves.
                    old = target / f".{entry.name}.{os.getpid()}.old"
                    shutil.rmtree(old, ignore_errors=True)
                    os.replace(destination, old)
                    os.replace(entry, destination)
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    os.replace(entry, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    _fsync_directory(target.parent)
