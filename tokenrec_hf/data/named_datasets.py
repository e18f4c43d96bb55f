"""The TokenRec benchmark datasets by name: LastFM, MovieLens-1M, Amazon Beauty and Amazon Clothing.

A dataset is read from a local folder when one is given (`data_dir=` or the `TOKENREC_DATA_DIR` environment
variable). Otherwise it is downloaded once from its public source into the Hugging Face cache folder, checked
against a pinned sha256, and reused from there.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers.utils import logging

from .configuration_data import PreprocessingConfig
from .download import default_cache_dir, download_file, offline_mode
from .interaction_data import InteractionData
from .processing import RawSequences, build_interaction_data
from .readers import read_amazon_reviews, read_movielens_ratings, read_sequence_file

logger = logging.get_logger(__name__)

DATA_DIR_ENV = "TOKENREC_DATA_DIR"

_SEQUENCE_FILES = (("user_sequence.txt", "sequence"), ("user_sequence.txt.gz", "sequence"))


@dataclass(frozen=True)
class NamedDatasetSpec:
    """Local file names, download source and reader of a named dataset.

    Attributes:
        name: The name passed to `load_named_dataset`.
        folder: The folder name under a parent data folder, for example `"LastFM"`.
        description: One line on the data and its origin.
        url: The public file that `load_named_dataset` downloads.
        sha256: The file's pinned sha256, or `None` when no trusted published checksum is known.
        reader: How to read the file: `"sequence"`, `"movielens"` or `"amazon_reviews"`.
        local_files: `(file name, reader)` pairs looked for in a local folder, in order of preference.
        preprocessing: Defaults for `PreprocessingConfig` that define the benchmark version of the dataset.
    """

    name: str
    folder: str
    description: str
    url: str
    sha256: str | None
    reader: str
    local_files: tuple[tuple[str, str], ...]
    preprocessing: dict[str, Any] = field(default_factory=dict)

    @property
    def filename(self) -> str:
        """The downloaded file's name in the cache."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]


_TOKENREC_RAW = "https://raw.githubusercontent.com/Quhaoh233/TokenRec"

NAMED_DATASETS: dict[str, NamedDatasetSpec] = {
    "lastfm": NamedDatasetSpec(
        name="lastfm",
        folder="LastFM",
        description="HetRec 2011 Last.fm artist tagging sequences (5-core, S3-Rec ids), as used by TokenRec.",
        url=f"{_TOKENREC_RAW}/d70ad19ce7f8e247512b0a620fdde3c5f6c3d807/data/LastFM/user_sequence.txt",
        sha256="a71f8c3d4bf3575c64f569dabd64d3c57553fbbd4b35b3cee495d9c81c09ab04",
        reader="sequence",
        local_files=_SEQUENCE_FILES,
    ),
    "beauty": NamedDatasetSpec(
        name="beauty",
        folder="Beauty",
        description="Amazon 2014 Beauty 5-core reviews as implicit sequences with raw Amazon ids, as used by TokenRec.",
        url=f"{_TOKENREC_RAW}/40a0ce45439d0de962fd6df8c1d8b436803b0791/data/Beauty/user_sequence.txt",
        sha256="47197cbee7bdc1896926e10d96b807dce0aecb9a1f0c2ccc887c21090237c9b7",
        reader="sequence",
        local_files=_SEQUENCE_FILES,
    ),
    "ml1m": NamedDatasetSpec(
        name="ml1m",
        folder="ML1M",
        description="MovieLens-1M ratings, every rating an interaction, movies with at least 5 ratings.",
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        # The sha256 (file size 5,917,549 bytes) is the one pinned in TensorFlow Datasets' MovieLens checksum list.
        sha256="a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        reader="movielens",
        local_files=(
            *_SEQUENCE_FILES,
            ("ratings.dat", "movielens"),
            ("ml-1m/ratings.dat", "movielens"),
            ("ml-1m.zip", "movielens"),
        ),
        preprocessing={"min_item_interactions": 5},
    ),
    "clothing": NamedDatasetSpec(
        name="clothing",
        folder="Clothing",
        description="Amazon 2014 Clothing, Shoes and Jewelry 5-core reviews (McAuley lab), sorted by review time.",
        url="http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Clothing_Shoes_and_Jewelry_5.json.gz",
        # NOTE: no trusted published checksum for this file was found, so the download is rejected unless the
        # caller passes expected_sha256= (or a local copy through data_dir=).
        sha256=None,
        reader="amazon_reviews",
        local_files=(
            *_SEQUENCE_FILES,
            ("reviews_Clothing_Shoes_and_Jewelry_5.json.gz", "amazon_reviews"),
            ("reviews_Clothing_Shoes_and_Jewelry_5.json", "amazon_reviews"),
        ),
    ),
}


def _normalize_name(name: str) -> str:
    key = name.lower().replace("-", "").replace("_", "")
    key = {"movielens1m": "ml1m", "amazonbeauty": "beauty", "amazonclothing": "clothing"}.get(key, key)
    if key not in NAMED_DATASETS:
        raise ValueError(
            f"Unknown dataset name {name!r}. Known datasets: {sorted(NAMED_DATASETS)}. For other data, use "
            "from_sequence_file, from_movielens_ratings, from_recbole_inter, from_table or from_hf_dataset."
        )
    return key


def _candidate_folders(root: Path, spec: NamedDatasetSpec) -> list[Path]:
    return [root, root / spec.folder, root / spec.name]


def _check_not_other_dataset(root: Path, spec: NamedDatasetSpec) -> None:
    """Raise when `root` is named after another named dataset, such as `ML1M/` passed for `"lastfm"`."""
    folder_name = root.name.lower().replace("-", "").replace("_", "")
    for other in NAMED_DATASETS.values():
        if other.name != spec.name and folder_name in {other.folder.lower(), other.name}:
            raise ValueError(
                f"data_dir {root} looks like the {other.name!r} dataset's folder, but dataset {spec.name!r} was "
                f"requested. Pass the {spec.folder}/ folder (or its parent), or load {other.name!r} instead."
            )


def _find_local_file(root: Path, spec: NamedDatasetSpec) -> tuple[Path, str] | None:
    _check_not_other_dataset(root, spec)
    for folder in _candidate_folders(root, spec):
        for filename, reader in spec.local_files:
            path = folder / filename
            if path.is_file():
                return path, reader
    return None


def _missing_data_message(spec: NamedDatasetSpec, searched: list[Path], reason: str) -> str:
    files = ", ".join(filename for filename, _ in spec.local_files)
    folders = ", ".join(str(folder) for folder in searched) or "(no folder given)"
    return (
        f"No local files for dataset {spec.name!r} found ({reason}). Looked for {files} in: {folders}. "
        f"Pass data_dir= with the folder holding one of these files (or its parent with a {spec.folder}/ "
        f"folder), or set the {DATA_DIR_ENV} environment variable to such a folder. Without either, the "
        f"dataset is downloaded from {spec.url} when the machine is online."
    )


def _read(path: Path, reader: str, min_rating: float | None) -> RawSequences:
    if reader == "movielens":
        return read_movielens_ratings(path, min_rating)
    if reader == "amazon_reviews":
        return read_amazon_reviews(path, min_rating)
    if min_rating is not None:
        raise ValueError(f"min_rating={min_rating} was set, but {path} has no ratings. Remove min_rating.")
    return read_sequence_file(path)


def _cached_or_downloaded(
    spec: NamedDatasetSpec,
    url: str | None,
    expected_sha256: str | None,
    cache_dir: Path,
    searched: list[Path],
    download: bool | None,
) -> Path:
    url = url or spec.url
    sha256 = expected_sha256 or spec.sha256
    if sha256 is None:
        raise ValueError(
            f"Dataset {spec.name!r} has no published sha256 that tokenrec_hf trusts, so it is not downloaded "
            f"unverified. Download {url} yourself, check it, and pass its folder as data_dir= (or set "
            f"{DATA_DIR_ENV}); or pass expected_sha256='<hex digest>' to download and verify it here."
        )
    destination = cache_dir / spec.name / sha256.lower() / url.rstrip("/").rsplit("/", 1)[-1]
    if not destination.is_file():
        if download is False:
            raise FileNotFoundError(_missing_data_message(spec, [*searched, destination.parent], "download=False"))
        if download is None and offline_mode():
            reason = "HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set; pass download=True to override"
            raise FileNotFoundError(_missing_data_message(spec, [*searched, destination.parent], reason))
    return download_file(url, destination, sha256)


def load_named_dataset(
    name: str,
    data_dir: str | os.PathLike | None = None,
    *,
    cache_dir: str | os.PathLike | None = None,
    download: bool | None = None,
    url: str | None = None,
    expected_sha256: str | None = None,
    **preprocessing: Any,
) -> InteractionData:
    """Load one of the TokenRec benchmark datasets and split it with the leave-one-out protocol.

    Known names: `"lastfm"`, `"ml1m"`, `"beauty"` and `"clothing"`. The data is read from the first of:

    1. `data_dir`: the dataset folder itself, or a parent folder holding `LastFM/`, `ML1M/`, `Beauty/` or
       `Clothing/`. Nothing else is tried when it is given.
    2. The `TOKENREC_DATA_DIR` environment variable, read the same way.
    3. A verified copy in `cache_dir/<name>/<sha256>/`, downloaded on first use. The download needs network
       access, and is skipped when `HF_HUB_OFFLINE` or `HF_DATASETS_OFFLINE` is set unless `download=True`.

    Args:
        name: The dataset name (case-insensitive; `"ml-1m"` and `"movielens-1m"` also work).
        data_dir: A local folder with the dataset files.
        cache_dir: Where downloads go; defaults to `$HF_HOME/tokenrec_hf/datasets`.
        download: `True` downloads even in offline mode, `False` never downloads, `None` downloads unless offline.
        url: Replace the dataset's download address, for a mirror.
        expected_sha256: The sha256 to check the download against, replacing the pinned one. Required for
            `"clothing"`, which has no pinned checksum.
        preprocessing: `PreprocessingConfig` fields (`max_sequence_length=100`, `unseen_user_fraction=0.0`, ...).
            `"ml1m"` defaults to `min_item_interactions=5`.

    Returns:
        The leave-one-out split.

    Raises:
        ValueError: The name is unknown, a file is malformed, or a download's checksum does not match (the
            downloaded file is deleted).
        FileNotFoundError: No local files were found and the dataset cannot be downloaded.
    """
    spec = NAMED_DATASETS[_normalize_name(name)]
    options = {**spec.preprocessing, **preprocessing}
    config = PreprocessingConfig.from_kwargs(options)

    found = None
    searched: list[Path] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        searched = _candidate_folders(root, spec)
        found = _find_local_file(root, spec)
        if found is None:
            reason = "data_dir does not exist" if not root.exists() else "data_dir has none of them"
            raise FileNotFoundError(_missing_data_message(spec, searched, reason))
    elif os.environ.get(DATA_DIR_ENV):
        root = Path(os.environ[DATA_DIR_ENV]).expanduser()
        searched = _candidate_folders(root, spec)
        found = _find_local_file(root, spec)
        if found is None:
            logger.warning(f"{DATA_DIR_ENV}={root} has no files for {spec.name!r}; trying the download cache.")

    if found is None:
        cache_root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        path = _cached_or_downloaded(spec, url, expected_sha256, cache_root, searched, download)
        found = (path, spec.reader)

    path, reader = found
    logger.info(f"Reading dataset {spec.name!r} from {path}.")
    raw = _read(path, reader, config.min_rating)
    return build_interaction_data(raw, config, spec.name)
