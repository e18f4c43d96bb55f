"""Readers for interaction files and tables, and the public `from_*` loaders built on them.

Every loader returns an `InteractionData` and accepts the `PreprocessingConfig` fields as keyword arguments
(`max_sequence_length`, `unseen_user_fraction`, `min_rating`, `k_core`, `min_user_interactions`,
`min_item_interactions`, `duplicates`, `short_users`). Raw user and item ids are kept as strings, so Amazon ASINs
and numeric MovieLens ids are handled alike.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .configuration_data import PreprocessingConfig
from .interaction_data import InteractionData
from .processing import RawSequences, build_interaction_data, group_events

_GZIP_MAGIC = b"\x1f\x8b"


# ----- shared helpers -----


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    """Read a text file, gunzipping it when it starts with the gzip magic bytes."""
    if not path.is_file():
        raise FileNotFoundError(f"Interaction file {path} does not exist. Check the path.")
    with open(path, "rb") as handle:
        compressed = handle.read(2) == _GZIP_MAGIC
    # Editors on Windows often start UTF-8 files with a byte-order mark, which would otherwise stick to the first id.
    decoding = "utf-8-sig" if encoding.lower().replace("_", "-") in {"utf-8", "utf8"} else encoding
    try:
        if compressed:
            with gzip.open(path, "rb") as handle:
                content = handle.read()
        else:
            content = path.read_bytes()
        # UTF-16 and UTF-32 text contains NUL bytes, but text in UTF-8 or an 8-bit encoding does not.
        if b"\x00" in content[:8192] and not decoding.lower().startswith(("utf-16", "utf16", "utf-32", "utf32")):
            raise ValueError(
                f"{path} contains NUL bytes, so it is a binary file, not a text file of interactions. Check the path."
            )
        return content.decode(decoding)
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path} is not valid {encoding} text ({error.reason} at byte {error.start}). "
            "Convert the file to UTF-8 (for example `iconv -f latin1 -t utf-8 in.txt > out.txt`), or load it in "
            "Python with its encoding, for example `encoding='latin-1'`."
        ) from error
    except (OSError, EOFError) as error:
        raise ValueError(f"{path} could not be read as a gzip file ({error}). Download or copy it again.") from error


def _parse_number(value: str, what: str, where: str, fix: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if math.isnan(number):
        raise ValueError(f"{where}: {what} {value!r} is not a number. {fix}")
    return number


def _dataset_name(name: str | None, path: Path) -> str:
    if name:
        return name
    stem = path.name.split(".")[0]
    return stem if stem not in {"user_sequence", "ratings", "reviews"} else path.parent.name or stem


def _build(raw: RawSequences, name: str, preprocessing: dict[str, Any]) -> InteractionData:
    return build_interaction_data(raw, PreprocessingConfig.from_kwargs(preprocessing), name)


def _reject_min_rating(preprocessing: dict[str, Any], source: str) -> None:
    if preprocessing.get("min_rating") is not None:
        raise ValueError(
            f"min_rating={preprocessing['min_rating']} was set, but {source} has no ratings. Remove min_rating."
        )


# ----- one sequence per line -----


def read_sequence_file(
    path: str | os.PathLike, *, delimiter: str | None = None, has_user_id: bool = True, encoding: str = "utf-8"
) -> RawSequences:
    """Read a file with one user sequence per line (P5 style: `user item item ...`, oldest item first).

    Blank lines are skipped. A `.gz` file (detected by its magic bytes) is read transparently.

    Args:
        path: The file.
        delimiter: Token separator; `None` splits on any whitespace.
        has_user_id: The first token of each line is the user id. Otherwise the 1-based line number is the id.
        encoding: Text encoding.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A line has an empty token, or a user appears on two lines.
    """
    path = Path(path)
    text = _read_text(path, encoding)
    sequences: dict[str, list[str]] = {}
    positions: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        tokens = line.split(delimiter) if delimiter is not None else line.split()
        if delimiter is not None:
            tokens = [token.strip() for token in tokens]
            if "" in tokens:
                raise ValueError(
                    f"{path}, line {number}: empty id at position {tokens.index('') + 1} in {line[:80]!r}. "
                    f"Remove the repeated or trailing delimiter {delimiter!r}."
                )
        user, items = (tokens[0], tokens[1:]) if has_user_id else (str(number), tokens)
        if user in sequences:
            raise ValueError(
                f"{path}, line {number}: user {user!r} already has a sequence on {positions[user]}. Each user needs "
                "exactly one line: merge the two lines. If the first token of each line is an item, not a user, "
                "load the file in Python with `from_sequence_file(path, has_user_id=False)`."
            )
        sequences[user] = items
        positions[user] = f"line {number}"
    if delimiter is None:
        _reject_other_separators(path, sequences)
    return RawSequences(str(path), sequences, positions)


def _reject_other_separators(path: Path, sequences: dict[str, list[str]]) -> None:
    """Raise when whitespace splitting left every line as one token that contains a comma, semicolon or vertical bar."""
    if not sequences or any(sequences.values()):
        return
    example = next(iter(sequences))
    for separator in (",", ";", "|"):
        if separator in example:
            raise ValueError(
                f"{path}: every line is a single token, such as {example[:40]!r}, so the ids seem to be separated "
                f"by {separator!r}. Replace the separators with spaces, or load the file in Python with "
                f"`from_sequence_file(path, delimiter={separator!r})`."
            )


def from_sequence_file(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    delimiter: str | None = None,
    has_user_id: bool = True,
    encoding: str = "utf-8",
    **preprocessing: Any,
) -> InteractionData:
    """Load a file with one user sequence per line (`user item item ...`, oldest first) and split it.

    Args:
        path: The file (plain text or gzip).
        name: Dataset name; defaults to the file or folder name.
        delimiter: Token separator; `None` splits on any whitespace.
        has_user_id: The first token of each line is the user id. Otherwise the line number is the id.
        encoding: Text encoding.
        preprocessing: `PreprocessingConfig` fields (`max_sequence_length=100`, `unseen_user_fraction`, ...).

    Returns:
        The leave-one-out split.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is empty or malformed, or a policy set to `"raise"` is met.
    """
    path = Path(path)
    _reject_min_rating(preprocessing, str(path))
    raw = read_sequence_file(path, delimiter=delimiter, has_user_id=has_user_id, encoding=encoding)
    return _build(raw, _dataset_name(name, path), preprocessing)


# ----- MovieLens ratings.dat -----


def _parse_movielens_fast(text: str) -> tuple[list[str], list[str], list[float], list[float], range] | None:
    """Parse well-formed ratings with pandas' C parser; return `None` when any line needs the checked slow path."""
    import pandas as pd

    try:
        frame = pd.read_csv(
            io.StringIO(text.replace("::", "\t")),
            sep="\t",
            header=None,
            names=["user", "item", "rating", "timestamp"],
            dtype={"user": str, "item": str, "rating": float, "timestamp": float},
            keep_default_na=False,
            skip_blank_lines=True,
            engine="c",
        )
    except (ValueError, pd.errors.ParserError):
        return None
    if frame.empty or frame[["rating", "timestamp"]].isna().to_numpy().any():
        return None
    if (frame["user"] == "").any() or (frame["item"] == "").any():
        return None
    if "\n\n" in text.strip("\n") or text.startswith("\n"):
        # Blank lines shift the line numbers; the slow path counts them exactly.
        return None
    lines = range(1, len(frame) + 1)
    return (
        frame["user"].tolist(),
        frame["item"].tolist(),
        frame["rating"].tolist(),
        frame["timestamp"].tolist(),
        lines,
    )


def parse_movielens_ratings(text: str, source: str, min_rating: float | None = None) -> RawSequences:
    """Parse MovieLens `UserID::MovieID::Rating::Timestamp` lines into per-user sequences sorted by time.

    Well-formed text goes through pandas' C parser (MovieLens-1M has a million lines). Text that it cannot read
    cleanly is parsed line by line, so that the error names the first bad line.

    Raises:
        ValueError: A line does not have four fields, or its rating or timestamp is not a number.
    """
    parsed = _parse_movielens_fast(text)
    if parsed is not None:
        users, items, ratings, timestamps, positions = parsed
        return group_events(
            source, users, items, positions, timestamps=timestamps, ratings=ratings, min_rating=min_rating
        )

    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    timestamps: list[float] = []
    positions: list[int] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("::")
        if len(fields) != 4:
            raise ValueError(
                f"{source}, line {number}: expected 4 '::'-separated fields UserID::MovieID::Rating::Timestamp, "
                f"found {len(fields)} in {line[:80]!r}. Fix the line, or use `from_table` for other layouts."
            )
        user, item, rating, timestamp = fields
        where = f"{source}, line {number}"
        ratings.append(_parse_number(rating, "rating", where, "Fix or remove the line."))
        timestamps.append(_parse_number(timestamp, "timestamp", where, "Fix the line."))
        users.append(user.strip())
        items.append(item.strip())
        positions.append(number)
    return group_events(source, users, items, positions, timestamps=timestamps, ratings=ratings, min_rating=min_rating)


def read_movielens_ratings(path: str | os.PathLike, min_rating: float | None = None) -> RawSequences:
    """Read MovieLens-1M `ratings.dat`, or the `ratings.dat` inside `ml-1m.zip`.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A line is malformed, or the zip has no `ratings.dat`.
    """
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [member for member in archive.namelist() if member.endswith("ratings.dat")]
            if not members:
                raise ValueError(f"{path} contains no ratings.dat; found {sorted(archive.namelist())[:10]}.")
            text = archive.read(members[0]).decode("latin-1")
        return parse_movielens_ratings(text, f"{path}!{members[0]}", min_rating)
    return parse_movielens_ratings(_read_text(path, "latin-1"), str(path), min_rating)


def from_movielens_ratings(
    path: str | os.PathLike, *, name: str | None = None, **preprocessing: Any
) -> InteractionData:
    """Load MovieLens `ratings.dat` (`UserID::MovieID::Rating::Timestamp`) and split it.

    Each user's movies are sorted by timestamp. The sort is stable, so ratings in the same second keep file order.
    Every rating counts as an interaction unless `min_rating` is set.

    Args:
        path: `ratings.dat`, optionally gzip'd, or `ml-1m.zip`.
        name: Dataset name; defaults to the folder name.
        preprocessing: `PreprocessingConfig` fields, for example `min_item_interactions=5`.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A line is malformed or the file is empty.
    """
    path = Path(path)
    raw = read_movielens_ratings(path, preprocessing.get("min_rating"))
    return _build(raw, _dataset_name(name, path), preprocessing)


# ----- RecBole atomic files -----


def read_recbole_inter(
    path: str | os.PathLike,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str | None = "rating",
    timestamp_field: str | None = "timestamp",
    min_rating: float | None = None,
    encoding: str = "utf-8",
) -> RawSequences:
    """Read a RecBole atomic `.inter` file: a tab-separated header of `name:type` fields, then one event per line.

    The rating and timestamp fields are used when the header has them and ignored otherwise.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The file is empty, the header lacks the user or item field, or a line is malformed.
    """
    path = Path(path)
    lines = _read_text(path, encoding).splitlines()
    if not lines or not lines[0].strip():
        raise ValueError(f"{path} is empty. A RecBole .inter file starts with a header such as 'user_id:token'.")
    header = [column.split(":", 1)[0].strip() for column in lines[0].split("\t")]
    for role, field_name in (("user", user_field), ("item", item_field)):
        if field_name not in header:
            raise ValueError(
                f"{path}, line 1: the header has no {role} field {field_name!r}; found {sorted(header)}. "
                f"Pass {role}_field= with one of these names."
            )
    user_column, item_column = header.index(user_field), header.index(item_field)
    rating_column = header.index(rating_field) if rating_field in header else None
    time_column = header.index(timestamp_field) if timestamp_field in header else None

    users, items, positions = [], [], []
    ratings: list[float] | None = [] if rating_column is not None else None
    timestamps: list[float] | None = [] if time_column is not None else None
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        values = line.split("\t")
        if len(values) != len(header):
            raise ValueError(
                f"{path}, line {number}: expected {len(header)} tab-separated fields ({', '.join(header)}), found "
                f"{len(values)} in {line[:80]!r}. Fix the line; RecBole files separate fields with tabs."
            )
        where = f"{path}, line {number}"
        if ratings is not None:
            ratings.append(_parse_number(values[rating_column], "rating", where, "Fix or remove the line."))
        if timestamps is not None:
            timestamps.append(_parse_number(values[time_column], "timestamp", where, "Fix the line."))
        users.append(values[user_column].strip())
        items.append(values[item_column].strip())
        positions.append(number)
    return group_events(
        str(path), users, items, positions, timestamps=timestamps, ratings=ratings, min_rating=min_rating
    )


def from_recbole_inter(
    path: str | os.PathLike,
    *,
    name: str | None = None,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str | None = "rating",
    timestamp_field: str | None = "timestamp",
    encoding: str = "utf-8",
    **preprocessing: Any,
) -> InteractionData:
    """Load a RecBole atomic `.inter` file (`user_id:token item_id:token rating:float timestamp:float`) and split it.

    Args:
        path: The `.inter` file.
        name: Dataset name; defaults to the file name without suffix.
        user_field, item_field, rating_field, timestamp_field: Header field names, without their `:type`.
        encoding: Text encoding.
        preprocessing: `PreprocessingConfig` fields.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The header or a line is malformed, or the file is empty.
    """
    path = Path(path)
    raw = read_recbole_inter(
        path,
        user_field=user_field,
        item_field=item_field,
        rating_field=rating_field,
        timestamp_field=timestamp_field,
        min_rating=preprocessing.get("min_rating"),
        encoding=encoding,
    )
    return _build(raw, _dataset_name(name, path), preprocessing)


# ----- tables: CSV, TSV, Parquet, datasets.Dataset -----


def _check_columns(found: Sequence[str], wanted: dict[str, str | None], source: str) -> None:
    for role, column in wanted.items():
        if column is not None and column not in found:
            raise ValueError(
                f"{source} has no {role} column {column!r}; found columns {sorted(found)}. "
                f"Pass {role}_column= with one of them."
            )


def _numeric_column(values: Sequence[Any], what: str, source: str, label: str) -> list[float]:
    numbers = []
    for row, value in enumerate(values, start=1):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            number = _parse_number(
                str(value), what, f"{source}, {label} {row}", f"Convert the {what} column to numbers."
            )
        if math.isnan(number):
            raise ValueError(f"{source}, {label} {row}: the {what} is missing. Fill or drop the row.")
        numbers.append(number)
    return numbers


def _events_from_columns(
    source: str,
    users: Sequence[Any],
    items: Sequence[Any],
    timestamps: Sequence[Any] | None,
    ratings: Sequence[Any] | None,
    min_rating: float | None,
    label: str,
) -> RawSequences:
    user_ids = [str(user).strip() for user in users]
    item_ids = [str(item).strip() for item in items]
    for role, ids, raw in (("user", user_ids, users), ("item", item_ids, items)):
        for row, (value, original) in enumerate(zip(ids, raw, strict=True), start=1):
            if not value or original is None or (isinstance(original, float) and math.isnan(original)):
                raise ValueError(f"{source}, {label} {row}: the {role} id is missing. Fill or drop the row.")
    timestamp_values = _numeric_column(timestamps, "timestamp", source, label) if timestamps is not None else None
    rating_values = _numeric_column(ratings, "rating", source, label) if ratings is not None else None
    return group_events(
        source,
        user_ids,
        item_ids,
        list(range(1, len(user_ids) + 1)),
        timestamps=timestamp_values,
        ratings=rating_values,
        min_rating=min_rating,
        position_label=label,
    )


def from_table(
    path: str | os.PathLike,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    timestamp_column: str | None = None,
    rating_column: str | None = None,
    file_format: str | None = None,
    sep: str | None = None,
    name: str | None = None,
    **preprocessing: Any,
) -> InteractionData:
    """Load a CSV, TSV or Parquet table of (user, item[, timestamp][, rating]) events and split it.

    Each user's items are sorted by `timestamp_column` when it is given (stable, so ties keep row order), and kept
    in row order otherwise. Error positions count data rows from 1, not counting the header.

    Args:
        path: The table file.
        user_column, item_column: Column names of the user and item ids.
        timestamp_column, rating_column: Optional numeric columns. A datetime column is converted to nanoseconds.
        file_format: `"csv"`, `"tsv"` or `"parquet"`; inferred from the suffix when `None`.
        sep: Field separator for text tables; `","` for CSV and a tab for TSV by default.
        name: Dataset name; defaults to the file name without suffix.
        preprocessing: `PreprocessingConfig` fields.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: The format is unknown, a column is missing, a value is missing or not numeric, or the table is
            empty.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Interaction table {path} does not exist. Check the path.")
    suffixes = [suffix.lower().lstrip(".") for suffix in path.suffixes if suffix.lower() != ".gz"]
    file_format = (file_format or (suffixes[-1] if suffixes else "")).lower()
    if file_format == "parquet":
        frame = pd.read_parquet(path)
    elif file_format in ("csv", "tsv", "txt"):
        separator = sep
        if separator is None:
            separator = "\t" if file_format == "tsv" else ","
        try:
            frame = pd.read_csv(path, sep=separator, dtype=str, keep_default_na=False)
        except pd.errors.EmptyDataError as error:
            raise ValueError(
                f"{path} is empty. Expected a header with {user_column!r} and {item_column!r}."
            ) from error
        except pd.errors.ParserError as error:
            raise ValueError(f"{path} is not a valid {file_format.upper()} table: {error}") from error
    else:
        raise ValueError(
            f"Cannot tell the table format of {path} (suffix {path.suffix!r}). "
            "Pass file_format='csv', 'tsv' or 'parquet'."
        )
    _check_columns(
        list(frame.columns),
        {"user": user_column, "item": item_column, "timestamp": timestamp_column, "rating": rating_column},
        str(path),
    )

    timestamps = None
    if timestamp_column is not None:
        column = frame[timestamp_column]
        timestamps = (
            column.astype("int64").tolist() if pd.api.types.is_datetime64_any_dtype(column) else column.tolist()
        )
    ratings = frame[rating_column].tolist() if rating_column is not None else None
    raw = _events_from_columns(
        str(path),
        frame[user_column].tolist(),
        frame[item_column].tolist(),
        timestamps,
        ratings,
        preprocessing.get("min_rating"),
        "row",
    )
    return _build(raw, _dataset_name(name, path), preprocessing)


def from_hf_dataset(
    dataset: Any,
    *,
    user_column: str = "user_id",
    item_column: str = "item_id",
    timestamp_column: str | None = None,
    rating_column: str | None = None,
    name: str = "dataset",
    **preprocessing: Any,
) -> InteractionData:
    """Split a `datasets.Dataset` of events, or of whole sequences, into an `InteractionData`.

    When `item_column` contains lists, each row is one user's whole sequence, oldest first. Otherwise each row is one
    (user, item) event, sorted per user by `timestamp_column` when it is given.

    Args:
        dataset: A `datasets.Dataset` (not a `DatasetDict`: pick a split first).
        user_column, item_column, timestamp_column, rating_column: Column names.
        name: Dataset name stored in the result.
        preprocessing: `PreprocessingConfig` fields.

    Raises:
        TypeError: `dataset` is not a `datasets.Dataset`.
        ValueError: A column is missing, or a value is missing or not numeric.
    """
    from datasets import Dataset, DatasetDict, List
    from datasets import Sequence as SequenceFeature

    if isinstance(dataset, DatasetDict):
        raise TypeError(f"Expected a datasets.Dataset, got a DatasetDict with splits {sorted(dataset)}; pick one.")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"Expected a datasets.Dataset, got {type(dataset).__name__}.")
    source = f"datasets.Dataset {name!r}"
    _check_columns(
        dataset.column_names,
        {"user": user_column, "item": item_column, "timestamp": timestamp_column, "rating": rating_column},
        source,
    )

    if isinstance(dataset.features[item_column], (List, SequenceFeature)):
        _reject_min_rating(preprocessing, source)
        sequences: dict[str, list[str]] = {}
        positions: dict[str, str] = {}
        for row, (user, items) in enumerate(zip(dataset[user_column], dataset[item_column], strict=True), start=1):
            user = str(user)
            if user in sequences:
                raise ValueError(
                    f"{source}, row {row}: user {user!r} already has a sequence on {positions[user]}. "
                    "Each user needs exactly one row; merge the rows."
                )
            sequences[user] = [str(item) for item in items]
            positions[user] = f"row {row}"
        raw = RawSequences(source, sequences, positions)
    else:
        raw = _events_from_columns(
            source,
            list(dataset[user_column]),
            list(dataset[item_column]),
            list(dataset[timestamp_column]) if timestamp_column else None,
            list(dataset[rating_column]) if rating_column else None,
            preprocessing.get("min_rating"),
            "row",
        )
    return _build(raw, name, preprocessing)


# ----- Amazon 2014 review files -----


def read_amazon_reviews(path: str | os.PathLike, min_rating: float | None = None) -> RawSequences:
    """Read an Amazon 2014 review file (one JSON object per line with `reviewerID`, `asin`, `unixReviewTime`).

    Each reviewer's items are sorted by `unixReviewTime` (stable, so same-day reviews keep file order), and the
    `overall` star rating feeds `min_rating`.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A line is not JSON or lacks a field.
    """
    path = Path(path)
    users, items, timestamps, ratings, positions = [], [], [], [], []
    for number, line in enumerate(io.StringIO(_read_text(path)), start=1):
        if not line.strip():
            continue
        try:
            review = json.loads(line)
            users.append(str(review["reviewerID"]))
            items.append(str(review["asin"]))
            timestamps.append(float(review["unixReviewTime"]))
            ratings.append(float(review.get("overall", math.nan)))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(
                f"{path}, line {number}: expected a JSON review with reviewerID, asin and unixReviewTime "
                f"({type(error).__name__}: {error}). Download the file again; it may be truncated."
            ) from error
        positions.append(number)
    return group_events(
        str(path), users, items, positions, timestamps=timestamps, ratings=ratings, min_rating=min_rating
    )
