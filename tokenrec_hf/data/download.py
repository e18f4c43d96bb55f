"""Checksum-verified downloads of public dataset files into the Hugging Face cache folder."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from huggingface_hub import constants
from tqdm.auto import tqdm
from transformers.utils import logging

from ..utils.io import apply_default_permissions

logger = logging.get_logger(__name__)

_CHUNK_SIZE = 1 << 20


class ChecksumMismatchError(ValueError):
    """Raised when a downloaded or cached file does not have the expected sha256."""


def default_cache_dir() -> Path:
    """Return the folder for downloaded datasets: `$HF_HOME/tokenrec_hf/datasets` (`~/.cache/huggingface/...`)."""
    return Path(constants.HF_HOME) / "tokenrec_hf" / "datasets"


def offline_mode() -> bool:
    """Return whether `HF_HUB_OFFLINE` or `HF_DATASETS_OFFLINE` turns network access off."""
    values = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HF_DATASETS_OFFLINE", ""))
    return any(value.strip().lower() in {"1", "true", "yes", "on"} for value in values)


def sha256_of_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str,
    destination: str | os.PathLike,
    expected_sha256: str,
    *,
    timeout: float = 60.0,
    disable_progress_bar: bool = False,
) -> Path:
    """Download `url` to `destination` unless a copy with the expected sha256 is already there.

    The download goes to a temporary file next to `destination` and is renamed only after its sha256 matched, so
    `destination` never contains an unverified file. A cached copy whose checksum differs is deleted and downloaded
    again.

    Args:
        url: The file's address (http, https or file).
        destination: Where to store the file.
        expected_sha256: The hex sha256 of the file's bytes.
        timeout: Seconds to wait for the server before giving up.
        disable_progress_bar: Hide the tqdm progress bar.

    Returns:
        `destination`, as a `Path`.

    Raises:
        ChecksumMismatchError: The downloaded bytes have another sha256; the file was deleted.
        OSError: The server could not be reached or returned an error.
    """
    destination = Path(destination)
    expected = expected_sha256.strip().lower()
    if destination.is_file():
        found = sha256_of_file(destination)
        if found == expected:
            logger.info(f"Using the cached {destination} (sha256 verified).")
            return destination
        logger.warning(
            f"Cached {destination} has sha256 {found}, expected {expected}; deleting and downloading again."
        )
        destination.unlink()

    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".incomplete", dir=destination.parent)
    temporary = Path(temporary_name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                response = urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - URLs come from the registry or the caller
            except (urllib.error.URLError, TimeoutError) as error:
                raise OSError(
                    f"Could not download {url} ({error}). Check the network, or download the file yourself and pass "
                    "its folder as data_dir= (or set TOKENREC_DATA_DIR)."
                ) from error
            with response:
                total = response.headers.get("Content-Length")
                with tqdm(
                    total=int(total) if total else None,
                    unit="B",
                    unit_scale=True,
                    desc=f"Downloading {destination.name}",
                    disable=disable_progress_bar,
                ) as progress:
                    for chunk in iter(lambda: response.read(_CHUNK_SIZE), b""):
                        handle.write(chunk)
                        digest.update(chunk)
                        progress.update(len(chunk))
        found = digest.hexdigest()
        if found != expected:
            raise ChecksumMismatchError(
                f"Checksum mismatch for {url}: expected sha256 {expected}, got {found}. The downloaded file was "
                "deleted. The source may have changed or the transfer was corrupted: retry, and if the new file is "
                "trusted, pass its checksum as expected_sha256=."
            )
        apply_default_permissions(temporary)
        os.replace(temporary, destination)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
    logger.info(f"Downloaded {url} to {destination} (sha256 verified).")
    return destination
