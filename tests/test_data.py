"""Tests for tokenrec_hf.data on small files written in each test: readers, filters, the split and serialization."""

import contextlib
import gzip
import io
import json
import logging

import pytest
import torch
from datasets import Dataset, DatasetDict

from tokenrec_hf.data import (
    DATA_DIR_ENV,
    InteractionData,
    PreprocessingConfig,
    from_hf_dataset,
    from_movielens_ratings,
    from_recbole_inter,
    from_sequence_file,
    from_table,
    load_named_dataset,
)
from tokenrec_hf.data.processing import logger as processing_logger


@contextlib.contextmanager
def captured_log(logger):
    """Yield a buffer that receives the logger's records; transformers loggers do not propagate to caplog."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    logger.addHandler(handler)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def sequence_file(tmp_path):
    # u1 is the longest user; u2 and u3 tie on length 3.
    return write(tmp_path / "user_sequence.txt", "u1 a b c d e\nu2 b c f\nu3 a f g\nu4 c d e g\n")


# ----- sequence files and the split -----


def test_sequence_file_split(sequence_file):
    data = from_sequence_file(sequence_file, name="toy")

    assert data.name == "toy"
    assert data.user_ids == ["u1", "u2", "u3", "u4"]
    # Training parts first (a b c, b, a, c d), then the held-out parts (d e, c f, f g, e g).
    assert data.item_ids == ["a", "b", "c", "d", "e", "f", "g"]
    assert data.train == [[0, 1, 2], [1], [0], [2, 3]]
    assert data.valid == [3, 2, 5, 4]
    assert data.test == [4, 5, 6, 6]
    assert data.num_users == 4
    assert data.num_items == 7
    assert data.num_interactions == 15


def test_history_per_stage(sequence_file):
    data = from_sequence_file(sequence_file)

    assert data.history(0, "valid") == [0, 1, 2]
    assert data.history(0, "test") == [0, 1, 2, 3]
    with pytest.raises(ValueError, match=r"stage='train' is invalid"):
        data.history(0, "train")
    with pytest.raises(ValueError, match=r"User index 9 is outside \[0, 4\)"):
        data.history(9)


def test_cut_keeps_most_recent_items(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 1 2 3 4 5 6 7\nu2 1 2 3\n")

    data = from_sequence_file(path, max_sequence_length=4)

    raw_train = [data.item_ids[item] for item in data.train[0]]
    assert raw_train == ["4", "5"]
    assert data.item_ids[data.valid[0]] == "6"
    assert data.item_ids[data.test[0]] == "7"
    assert data.stats["sequences_cut"] == 1
    assert data.stats["interactions_before_cut"] == 10
    assert data.num_interactions == 7


def test_cut_disabled_with_none(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 1 2 3 4 5 6 7\n")

    data = from_sequence_file(path, max_sequence_length=None)

    assert len(data.train[0]) == 5


def test_sequence_file_gzip_and_delimiter(tmp_path):
    path = tmp_path / "seq.txt.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("B00A,B01,B02,B03\n\nB00B,B02,B03,B04\n")

    data = from_sequence_file(path, delimiter=",")

    assert data.user_ids == ["B00A", "B00B"]
    assert data.item_ids == ["B01", "B02", "B03", "B04"]


def test_sequence_file_without_user_ids(tmp_path):
    path = write(tmp_path / "seq.txt", "5 6 7\n7 8 9 10\n")

    data = from_sequence_file(path, has_user_id=False)

    assert data.user_ids == ["1", "2"]
    assert data.train == [[0], [1, 2]]


def test_sequence_file_empty_token_rejected(tmp_path):
    path = write(tmp_path / "seq.txt", "u1,a,b,c\nu2,a,,c,d\n")

    with pytest.raises(ValueError, match=r"seq\.txt, line 2: empty id at position 3 .* Remove the repeated"):
        from_sequence_file(path, delimiter=",")


def test_sequence_file_repeated_user_rejected(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a b c\nu2 a b c\nu1 d e f\n")

    with pytest.raises(ValueError, match=r"line 3: user 'u1' already has a sequence on line 1.*merge"):
        from_sequence_file(path)


def test_comma_separated_file_named(tmp_path):
    path = write(tmp_path / "seq.txt", "u1,a,b,c\nu2,a,b,d\n")

    with pytest.raises(ValueError, match=r"seem to be separated by ','.*from_sequence_file\(path, delimiter=','\)"):
        from_sequence_file(path)


def test_latin1_file_suggests_conversion(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes("u1 caf\xe9 b c\n".encode("latin-1"))

    with pytest.raises(ValueError, match=r"not valid utf-8 text.*iconv -f latin1.*encoding='latin-1'"):
        from_sequence_file(path)


def test_byte_order_mark_stripped(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"\xef\xbb\xbfu1 a b c\nu2 a b d\n")

    data = from_sequence_file(path)

    assert data.user_ids == ["u1", "u2"]


def test_binary_file_rejected(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes(b"\x7fELF\x00\x00\x01 a b c\n")

    with pytest.raises(ValueError, match=r"seq\.txt contains NUL bytes, so it is a binary file"):
        from_sequence_file(path)


def test_utf16_file_with_encoding(tmp_path):
    path = tmp_path / "seq.txt"
    path.write_bytes("u1 a b c\nu2 a b d\n".encode("utf-16"))

    data = from_sequence_file(path, encoding="utf-16")

    assert data.user_ids == ["u1", "u2"]


def test_short_users_name_active_filters(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a\nu2 b\n")

    with pytest.raises(ValueError, match=r"after de-duplication and filters\. Leave-one-out needs 3 distinct items"):
        from_sequence_file(path)
    with pytest.raises(ValueError, match=r"filters \(min_item_interactions=2\)\. Leave-one-out"):
        from_sequence_file(path, min_item_interactions=2)


def test_empty_file_rejected(tmp_path):
    path = write(tmp_path / "empty.txt", "\n\n")

    with pytest.raises(ValueError, match=r"empty\.txt contains no interactions"):
        from_sequence_file(path)


def test_missing_file_rejected(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nothere\.txt does not exist"):
        from_sequence_file(tmp_path / "nothere.txt")


# ----- duplicates and short users -----


def test_duplicates_keep_first(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a b a c b d\nu2 a b c\n")

    with captured_log(processing_logger) as captured:
        data = from_sequence_file(path)

    assert "removed 2 duplicate (user, item) interactions" in captured.getvalue()

    assert [data.item_ids[item] for item in data.train[0]] == ["a", "b"]
    assert data.item_ids[data.valid[0]] == "c"
    assert data.item_ids[data.test[0]] == "d"
    assert data.stats["duplicates_removed"] == 2


def test_duplicates_raise_policy(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a b c\nu2 a b a c\n")

    with pytest.raises(ValueError, match=r"line 2 \(user 'u2'\): item 'a' appears more than once.*keep_first"):
        from_sequence_file(path, duplicates="raise")


def test_short_users_dropped(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a b c\nu2 a b\nu3\nu4 a b c d\n")

    with captured_log(processing_logger) as captured:
        data = from_sequence_file(path)

    assert "dropped 2 users with fewer than 3 interactions" in captured.getvalue()
    assert data.user_ids == ["u1", "u4"]
    assert data.stats["short_users_dropped"] == 2


def test_short_users_raise_policy(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a b c\nu2 a b\n")

    with pytest.raises(
        ValueError, match=r"line 2 \(user 'u2'\) has 2 interaction\(s\).*at least 3.*short_users='drop'"
    ):
        from_sequence_file(path, short_users="raise")


def test_all_users_too_short(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a b\nu2 a\n")

    with pytest.raises(ValueError, match=r"No user of .*seq\.txt has 3 or more interactions"):
        from_sequence_file(path)


# ----- filters -----


def test_min_item_interactions_one_pass(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a b c x\nu2 a b c\nu3 a b c y\n")

    data = from_sequence_file(path, min_item_interactions=2)

    assert sorted(data.item_ids) == ["a", "b", "c"]
    assert data.stats["items_removed_by_filters"] == 2


def test_min_user_interactions(tmp_path):
    path = write(tmp_path / "seq.txt", "u1 a b c d\nu2 a b c\n")

    data = from_sequence_file(path, min_user_interactions=4)

    assert data.user_ids == ["u1"]
    assert data.stats["users_removed_by_filters"] == 1


def test_k_core_is_iterative(tmp_path):
    # With k=3, item z (2 users) goes first; u3 then has 2 items and goes; item y then has 2 users and goes.
    lines = ["u1 a b c y", "u2 a b c y", "u3 y z", "u4 a b c z", "u5 a b c"]
    path = write(tmp_path / "seq.txt", "\n".join(lines) + "\n")

    data = from_sequence_file(path, k_core=3)

    assert data.user_ids == ["u1", "u2", "u4", "u5"]
    assert sorted(data.item_ids) == ["a", "b", "c"]
    assert data.stats["items_removed_by_filters"] == 2
    assert data.stats["users_removed_by_filters"] == 1


def test_min_rating_rejected_without_ratings(sequence_file):
    with pytest.raises(ValueError, match=r"min_rating=4 was set, but .* has no ratings"):
        from_sequence_file(sequence_file, min_rating=4)


def test_preprocessing_config_validation():
    with pytest.raises(ValueError, match=r"max_sequence_length=2 is invalid"):
        PreprocessingConfig(max_sequence_length=2)
    with pytest.raises(ValueError, match=r"unseen_user_fraction=1.0 is invalid"):
        PreprocessingConfig(unseen_user_fraction=1.0)
    with pytest.raises(ValueError, match=r"k_core=0 is invalid"):
        PreprocessingConfig(k_core=0)
    with pytest.raises(ValueError, match=r"duplicates='merge' is invalid"):
        PreprocessingConfig(duplicates="merge")
    with pytest.raises(TypeError, match=r"Unknown preprocessing option\(s\) \['max_len'\]"):
        PreprocessingConfig.from_kwargs({"max_len": 5})


# ----- unseen users -----


def test_unseen_users_are_least_active(tmp_path):
    # Lengths before the cut: 6, 3, 3, 5, 4. The cut to 3 makes every length equal, so the choice must use
    # the lengths before the cut: users 1 and 2 (a tie on 3, broken by index).
    lines = ["u0 a b c d e f", "u1 a b c", "u2 b c d", "u3 a b c d e", "u4 a b c d"]
    path = write(tmp_path / "seq.txt", "\n".join(lines) + "\n")

    data = from_sequence_file(path, max_sequence_length=3, unseen_user_fraction=0.4)

    assert data.unseen_users == [1, 2]
    assert data.seen_users == [0, 3, 4]


def test_unseen_user_tie_broken_by_index(tmp_path):
    lines = ["u0 a b c d", "u1 a b c", "u2 b c d", "u3 a b c d"]
    path = write(tmp_path / "seq.txt", "\n".join(lines) + "\n")

    data = from_sequence_file(path, unseen_user_fraction=0.25)

    assert data.unseen_users == [1]


def test_unseen_users_excluded_from_training(tmp_path):
    lines = ["u0 a b c d e", "u1 a b c", "u2 b c d e"]
    path = write(tmp_path / "seq.txt", "\n".join(lines) + "\n")
    data = from_sequence_file(path, unseen_user_fraction=0.3)

    users, items = data.train_pairs()
    all_users, _ = data.train_pairs(include_unseen=True)
    splits = data.to_hf_datasets()

    assert data.unseen_users == [1]
    assert users.dtype == torch.long
    assert 1 not in users.tolist()
    assert 1 in all_users.tolist()
    assert len(users) == len(items) == 3 + 2
    assert splits["train"]["user_index"] == [0, 2]
    assert splits["validation"]["is_unseen"] == [False, True, False]


# ----- MovieLens ratings.dat -----


def test_movielens_sorted_by_time_stably(tmp_path):
    lines = [
        "1::10::5::300",
        "1::11::4::100",
        "1::12::3::200",
        "1::13::5::200",
        "1::14::1::400",
        "2::10::5::10",
        "2::11::5::20",
        "2::12::5::30",
    ]
    path = write(tmp_path / "ratings.dat", "\n".join(lines) + "\n")

    data = from_movielens_ratings(path)

    order = [data.item_ids[item] for item in data.history(0, "test") + [data.test[0]]]
    assert order == ["11", "12", "13", "10", "14"]


def test_movielens_fast_and_checked_parsers_agree():
    from tokenrec_hf.data.readers import _parse_movielens_fast, parse_movielens_ratings

    text = "2::5::3::9\n1::10::5::300\n1::11::4::100\n2::6::1::8\n1::12::3::100\n"
    with_blank_line = text.replace("\n1::11", "\n\n1::11")

    fast = parse_movielens_ratings(text, "ratings.dat")
    checked = parse_movielens_ratings(with_blank_line, "ratings.dat")

    assert _parse_movielens_fast(text) is not None
    assert _parse_movielens_fast(with_blank_line) is None
    assert fast.sequences == checked.sequences == {"2": ["6", "5"], "1": ["11", "12", "10"]}
    assert fast.positions == checked.positions == {"2": "line 1", "1": "line 2"}


def test_movielens_min_rating(tmp_path):
    lines = ["1::10::5::1", "1::11::2::2", "1::12::4::3", "1::13::4::4"]
    path = write(tmp_path / "ratings.dat", "\n".join(lines) + "\n")

    data = from_movielens_ratings(path, min_rating=4)

    assert "11" not in data.item_ids
    assert data.stats["events_below_min_rating"] == 1


def test_movielens_malformed_line(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::1\n1::11::2\n")

    with pytest.raises(ValueError, match=r"ratings\.dat, line 2: expected 4 '::'-separated fields.*found 3"):
        from_movielens_ratings(path)


def test_movielens_non_numeric_rating(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::10::5::1\n1::11::five::2\n")

    with pytest.raises(ValueError, match=r"ratings\.dat, line 2: rating 'five' is not a number"):
        from_movielens_ratings(path)


# ----- RecBole .inter -----


def test_recbole_inter(tmp_path):
    rows = [
        "user_id:token\titem_id:token\trating:float\ttimestamp:float",
        "7\tB\t5\t3",
        "7\tA\t1\t1",
        "7\tC\t4\t2",
        "8\tA\t4\t1",
        "8\tB\t4\t2",
        "8\tC\t4\t3",
    ]
    path = write(tmp_path / "toy.inter", "\n".join(rows) + "\n")

    data = from_recbole_inter(path)
    filtered = from_recbole_inter(path, min_rating=2, short_users="drop")

    assert data.name == "toy"
    assert [data.item_ids[item] for item in data.history(0, "test")] == ["A", "C"]
    assert data.item_ids[data.test[0]] == "B"
    assert filtered.user_ids == ["8"]


def test_recbole_inter_missing_field(tmp_path):
    path = write(tmp_path / "toy.inter", "session:token\titem_id:token\n1\t2\n")

    with pytest.raises(ValueError, match=r"no user field 'user_id'; found \['item_id', 'session'\]"):
        from_recbole_inter(path)


def test_recbole_inter_non_numeric_timestamp(tmp_path):
    path = write(tmp_path / "toy.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\tyesterday\n")

    with pytest.raises(ValueError, match=r"toy\.inter, line 2: timestamp 'yesterday' is not a number"):
        from_recbole_inter(path)


def test_recbole_inter_empty(tmp_path):
    path = write(tmp_path / "toy.inter", "")

    with pytest.raises(ValueError, match=r"toy\.inter is empty"):
        from_recbole_inter(path)


# ----- tables and datasets.Dataset -----


def _events_frame():
    import pandas as pd

    return pd.DataFrame(
        {
            "reviewer": ["A1X", "A1X", "A1X", "B2Y", "B2Y", "B2Y"],
            "asin": ["B000C", "B000A", "B000B", "B000A", "B000B", "B000C"],
            "time": [30, 10, 20, 1, 2, 3],
            "stars": [5.0, 4.0, 3.0, 5.0, 5.0, 5.0],
        }
    )


@pytest.mark.parametrize("suffix", ["csv", "tsv", "parquet"])
def test_table_formats(tmp_path, suffix):
    frame = _events_frame()
    path = tmp_path / f"events.{suffix}"
    if suffix == "parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep="\t" if suffix == "tsv" else ",", index=False)

    data = from_table(path, user_column="reviewer", item_column="asin", timestamp_column="time", rating_column="stars")

    assert data.name == "events"
    assert data.user_ids == ["A1X", "B2Y"]
    assert [data.item_ids[item] for item in data.history(0, "test")] == ["B000A", "B000B"]
    assert data.item_ids[data.test[0]] == "B000C"


def test_table_missing_column(tmp_path):
    path = tmp_path / "events.csv"
    _events_frame().to_csv(path, index=False)

    with pytest.raises(
        ValueError, match=r"no user column 'user_id'; found columns \['asin', 'reviewer', 'stars', 'time'\]"
    ):
        from_table(path, item_column="asin")


def test_table_non_numeric_rating(tmp_path):
    path = write(tmp_path / "events.csv", "user,item,rating\nu,a,5\nu,b,good\nu,c,4\n")

    with pytest.raises(ValueError, match=r"events\.csv, row 2: rating 'good' is not a number"):
        from_table(path, user_column="user", item_column="item", rating_column="rating")


def test_table_unknown_format(tmp_path):
    path = write(tmp_path / "events.xlsx", "x")

    with pytest.raises(ValueError, match=r"Cannot tell the table format.*file_format='csv'"):
        from_table(path)


def test_hf_dataset_events_and_sequences():
    events = Dataset.from_pandas(_events_frame())
    sequences = Dataset.from_dict({"user": ["x", "y"], "items": [["1", "2", "3"], ["3", "2", "1", "4"]]})

    from_events = from_hf_dataset(events, user_column="reviewer", item_column="asin", timestamp_column="time")
    from_sequences = from_hf_dataset(sequences, user_column="user", item_column="items", name="seq")

    assert from_events.item_ids[from_events.test[0]] == "B000C"
    assert from_sequences.name == "seq"
    assert [from_sequences.item_ids[item] for item in from_sequences.train[1]] == ["3", "2"]


def test_hf_dataset_rejects_dataset_dict():
    splits = DatasetDict({"train": Dataset.from_dict({"user_id": ["u"], "item_id": ["i"]})})

    with pytest.raises(TypeError, match=r"got a DatasetDict with splits \['train'\]; pick one"):
        from_hf_dataset(splits)


# ----- InteractionData API -----


def test_id_lookups(sequence_file):
    data = from_sequence_file(sequence_file)

    assert data.user_index("u3") == 2
    assert data.item_index("f") == 5
    with pytest.raises(ValueError, match=r"Unknown user id 'nobody' for dataset .*4 users, for example 'u1'"):
        data.user_index("nobody")
    with pytest.raises(ValueError, match=r"Unknown item id 'zz'"):
        data.item_index("zz")


def test_to_hf_datasets_columns(sequence_file):
    data = from_sequence_file(sequence_file, unseen_user_fraction=0.25)

    splits = data.to_hf_datasets()
    per_interaction = data.to_hf_datasets(train_format="per_interaction", include_unseen_in_train=True)

    assert list(splits) == ["train", "validation", "test"]
    assert splits["train"].column_names == ["user_index", "user_id", "history"]
    assert splits["test"].column_names == ["user_index", "user_id", "history", "target", "is_unseen"]
    assert splits["train"].num_rows == 3
    assert splits["validation"][0] == {
        "user_index": 0,
        "user_id": "u1",
        "history": [0, 1, 2],
        "target": 3,
        "is_unseen": False,
    }
    assert splits["test"][0]["history"] == [0, 1, 2, 3]
    assert per_interaction["train"].num_rows == 7
    assert per_interaction["train"][1] == {"user_index": 0, "user_id": "u1", "history": [0, 2], "target": 1}
    with pytest.raises(ValueError, match=r"train_format='pairs' is invalid"):
        data.to_hf_datasets(train_format="pairs")


def test_split_stats_table(sequence_file):
    data = from_sequence_file(sequence_file, name="toy")

    stats = data.split_stats()
    table = data.format_split_stats()

    assert stats["users"] == 4
    assert stats["train_interactions"] == 7
    assert stats["interactions"] == 15
    assert "| interactions" in table
    assert table.startswith("Split of toy:\n")


def test_save_and_load_round_trip(sequence_file, tmp_path):
    data = from_sequence_file(sequence_file, unseen_user_fraction=0.25)
    folder = tmp_path / "saved"

    data.save_pretrained(folder)
    loaded = InteractionData.from_pretrained(folder)

    assert sorted(path.name for path in folder.iterdir()) == ["interaction_data.json"]
    for attribute in ("name", "user_ids", "item_ids", "train", "valid", "test", "unseen_users", "config", "stats"):
        assert getattr(loaded, attribute) == getattr(data, attribute), attribute
    assert json.loads((folder / "interaction_data.json").read_text())["tokenrec_hf_version"]


def test_load_rejects_inconsistent_file(sequence_file, tmp_path):
    folder = tmp_path / "saved"
    from_sequence_file(sequence_file).save_pretrained(folder)
    path = folder / "interaction_data.json"
    payload = json.loads(path.read_text())
    payload["valid"] = payload["valid"][:-1]
    path.write_text(json.dumps(payload))

    with pytest.raises(
        ValueError, match=r"interaction_data\.json is inconsistent: .*`valid` has 3 entries but there are 4"
    ):
        InteractionData.from_pretrained(folder)


def test_load_rejects_missing_fields(tmp_path):
    write(tmp_path / "saved" / "interaction_data.json", json.dumps({"name": "x"}))

    with pytest.raises(ValueError, match=r"lacks the field\(s\) \['item_ids', 'test', 'train', 'user_ids', 'valid'\]"):
        InteractionData.from_pretrained(tmp_path / "saved")


# ----- named datasets from local folders -----


def test_named_dataset_unknown_name():
    with pytest.raises(
        ValueError,
        match=r"Unknown dataset name 'netflix'\. Known datasets: \['beauty', 'clothing', 'lastfm', 'ml1m'\]",
    ):
        load_named_dataset("netflix")


def test_named_dataset_from_parent_and_dataset_folder(tmp_path, monkeypatch):
    write(tmp_path / "LastFM" / "user_sequence.txt", "1 1 2 3\n2 2 3 4 5\n")
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)

    from_parent = load_named_dataset("lastfm", tmp_path)
    from_folder = load_named_dataset("LastFM", tmp_path / "LastFM")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    from_env = load_named_dataset("lastfm", download=False)

    assert from_parent.name == "lastfm"
    for data in (from_parent, from_folder, from_env):
        assert data.num_users == 2
        assert data.num_items == 5


def test_named_dataset_missing_folder(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)

    with pytest.raises(
        FileNotFoundError,
        match=r"No local files for dataset 'beauty'.*data_dir does not exist.*Looked for user_sequence\.txt.*TOKENREC_DATA_DIR",
    ):
        load_named_dataset("beauty", tmp_path / "nowhere")


def test_named_dataset_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    with pytest.raises(FileNotFoundError, match=r"HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set.*data_dir="):
        load_named_dataset("lastfm", cache_dir=tmp_path)


def test_named_ml1m_from_ratings_dat(tmp_path):
    # Movie 99 has 1 rating and is dropped by the named dataset's 5-rating filter.
    lines = [f"{user}::{movie}::4::{user * 10 + movie}" for user in range(1, 6) for movie in (1, 2, 3)]
    lines.append("1::99::5::1000")
    write(tmp_path / "ml-1m" / "ratings.dat", "\n".join(lines) + "\n")

    data = load_named_dataset("ml1m", tmp_path)
    unfiltered = load_named_dataset("ml1m", tmp_path, min_item_interactions=None)

    assert data.num_items == 3
    assert data.stats["items_removed_by_filters"] == 1
    assert unfiltered.num_items == 4


def test_named_clothing_from_reviews(tmp_path):
    reviews = [
        {"reviewerID": "R1", "asin": "B3", "overall": 5.0, "unixReviewTime": 300},
        {"reviewerID": "R1", "asin": "B1", "overall": 4.0, "unixReviewTime": 100},
        {"reviewerID": "R1", "asin": "B2", "overall": 2.0, "unixReviewTime": 200},
        {"reviewerID": "R2", "asin": "B1", "overall": 5.0, "unixReviewTime": 100},
        {"reviewerID": "R2", "asin": "B2", "overall": 5.0, "unixReviewTime": 100},
        {"reviewerID": "R2", "asin": "B3", "overall": 5.0, "unixReviewTime": 50},
    ]
    path = tmp_path / "Clothing" / "reviews_Clothing_Shoes_and_Jewelry_5.json.gz"
    path.parent.mkdir()
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(review) for review in reviews) + "\n")

    data = load_named_dataset("clothing", tmp_path)

    assert [data.item_ids[item] for item in data.history(0, "test")] == ["B1", "B2"]
    assert [data.item_ids[item] for item in data.history(1, "test")] == ["B3", "B1"]


def test_named_clothing_download_needs_checksum(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)

    with pytest.raises(ValueError, match=r"'clothing' has no published sha256 .* expected_sha256="):
        load_named_dataset("clothing", cache_dir=tmp_path, download=True)


def test_named_dataset_rejects_other_dataset_folder(tmp_path):
    folder = tmp_path / "ML1M"
    folder.mkdir()
    (folder / "user_sequence.txt").write_text("1 1 2 3\n2 2 3 4\n")
    with pytest.raises(ValueError, match=r"looks like the 'ml1m' dataset's folder, but dataset 'lastfm'"):
        load_named_dataset("lastfm", folder)
