"""Interaction data for TokenRec: named benchmark datasets, generic readers and the leave-one-out split.

`load_named_dataset("lastfm")` and the `from_*` loaders return an `InteractionData`, whose `to_hf_datasets()` gives a
`datasets.DatasetDict` with `"train"`, `"validation"` and `"test"`.
"""

from .configuration_data import PreprocessingConfig
from .download import ChecksumMismatchError, default_cache_dir, download_file, sha256_of_file
from .interaction_data import INTERACTION_DATA_FILE, InteractionData
from .named_datasets import DATA_DIR_ENV, NAMED_DATASETS, NamedDatasetSpec, load_named_dataset
from .processing import RawSequences, build_interaction_data
from .readers import (
    from_hf_dataset,
    from_movielens_ratings,
    from_recbole_inter,
    from_sequence_file,
    from_table,
    read_amazon_reviews,
    read_movielens_ratings,
    read_recbole_inter,
    read_sequence_file,
)

__all__ = [
    "DATA_DIR_ENV",
    "INTERACTION_DATA_FILE",
    "NAMED_DATASETS",
    "ChecksumMismatchError",
    "InteractionData",
    "NamedDatasetSpec",
    "PreprocessingConfig",
    "RawSequences",
    "build_interaction_data",
    "default_cache_dir",
    "download_file",
    "from_hf_dataset",
    "from_movielens_ratings",
    "from_recbole_inter",
    "from_sequence_file",
    "from_table",
    "load_named_dataset",
    "read_amazon_reviews",
    "read_movielens_ratings",
    "read_recbole_inter",
    "read_sequence_file",
    "sha256_of_file",
]
