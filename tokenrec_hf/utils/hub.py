"""Resolve a local folder or a Hub repository id to a local folder, with errors that explain how to work offline."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError


class HubUnreachableError(OSError):
    """Raised when a Hub repository id cannot be resolved, typically because the machine is offline."""


def _looks_like_local_path(name_or_path: str) -> bool:
    return name_or_path.startswith((".", "/", "~")) or os.sep in name_or_path.rstrip(os.sep).split("/", 1)[-1]


def resolve_pretrained_folder(
    name_or_path: str | os.PathLike,
    required_files: Sequence[str] = (),
    *,
    artifact: str = "artifact",
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    token: str | bool | None = None,
    local_files_only: bool = False,
    allow_patterns: Sequence[str] | None = None,
) -> Path:
    """Return a local folder for `name_or_path`, downloading a Hub snapshot when it is not a local folder.

    Args:
        name_or_path: A local folder, or a Hub repository id such as `"user/tokenrec-lastfm"`.
        required_files: Files, relative to the folder, that must exist. Missing ones raise `FileNotFoundError`.
        artifact: What is being loaded, used in error messages.
        revision, cache_dir, token, local_files_only: Passed to `huggingface_hub.snapshot_download`.
        allow_patterns: Restrict the download to these glob patterns.

    Raises:
        FileNotFoundError: The folder exists but lacks a required file, or a local-looking path does not exist.
        HubUnreachableError: The Hub id could not be downloaded (offline, unknown repository, or no access).
    """
    name = os.fspath(name_or_path)
    folder = Path(name).expanduser()
    if folder.is_dir():
        _check_required_files(folder, required_files, artifact)
        return folder
    if folder.exists():
        raise NotADirectoryError(f"{artifact} path {name!r} is a file; pass the folder that contains it.")
    if _looks_like_local_path(name) or name.count("/") > 1:
        raise FileNotFoundError(
            f"{artifact} folder {name!r} does not exist. Check the path, or pass a Hub repository id such as "
            "'user/name'."
        )

    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}
    try:
        snapshot = snapshot_download(
            repo_id=name,
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only or offline,
            allow_patterns=list(allow_patterns) if allow_patterns else None,
        )
    except (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, OSError, ValueError) as error:
        reason = "HF_HUB_OFFLINE is set and it is not in the local cache" if offline else f"{type(error).__name__}"
        raise HubUnreachableError(
            f"Could not load {artifact} {name!r} from the Hugging Face Hub ({reason}). "
            "If this machine is offline, download the repository elsewhere and pass its local folder instead, "
            "for example `from_pretrained('/path/to/folder')`."
        ) from error
    folder = Path(snapshot)
    _check_required_files(folder, required_files, artifact)
    return folder


def _check_required_files(folder: Path, required_files: Sequence[str], artifact: str) -> None:
    missing = sorted({name for name in required_files if not (folder / name).is_file()})
    if missing:
        present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        if len(present) > 12:
            present = [*present[:12], f"... {len(present) - 12} more"]
        raise FileNotFoundError(
            f"{artifact} folder {folder} is missing {missing}; it contains {present}. "
            "Save it again with `save_pretrained`, or point to the folder that `save_pretrained` wrote."
        )
