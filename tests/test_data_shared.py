"""Counts and id maps of the named datasets on the real LastFM, Beauty and ML1M files."""

import pytest

from tokenrec_hf.data import load_named_dataset

pytestmark = pytest.mark.shared_data


def read_id_list(path):
    lines = path.read_text().splitlines()
    assert lines[0] == "org_id remap_id"
    return [line.split()[0] for line in lines[1:]]


@pytest.fixture(scope="module")
def lastfm(shared_data_dir):
    return load_named_dataset("lastfm", shared_data_dir)


@pytest.fixture(scope="module")
def beauty(shared_data_dir):
    return load_named_dataset("beauty", shared_data_dir / "Beauty")


def test_lastfm_counts(lastfm):
    assert lastfm.num_users == 1090
    assert lastfm.num_items == 3646
    assert lastfm.stats["interactions_before_cut"] == 52551
    assert lastfm.num_interactions == 37080
    assert max(len(items) for items in lastfm.train) == 98


def test_beauty_counts(beauty):
    assert beauty.num_users == 22363
    assert beauty.num_items == 12101
    assert beauty.stats["interactions_before_cut"] == 198502
    assert beauty.num_interactions == 197861


def test_ml1m_counts(shared_data_dir):
    data = load_named_dataset("ml1m", shared_data_dir)

    assert data.num_users == 6040
    assert data.num_items == 3416
    assert data.stats["interactions_before_cut"] == 999611
    assert data.num_interactions == 447294


@pytest.mark.parametrize("name, folder", [("lastfm", "LastFM"), ("beauty", "Beauty")])
def test_id_maps_match_tokenrec_lists(lastfm, beauty, shared_data_dir, name, folder):
    data = {"lastfm": lastfm, "beauty": beauty}[name]

    assert data.user_ids == read_id_list(shared_data_dir / folder / "user_list.txt")
    assert data.item_ids == read_id_list(shared_data_dir / folder / "item_list.txt")


def test_lastfm_split_matches_tokenrec_test_file(lastfm, shared_data_dir):
    # test.txt contains each user's full remapped sequence; the split's last two items must be its last two.
    for line in (shared_data_dir / "LastFM" / "test.txt").read_text().splitlines():
        user, *items = (int(token) for token in line.split())
        assert lastfm.test[user] == items[-1]
        assert lastfm.valid[user] == items[-2]
        assert lastfm.train[user] == items[-100:-2]


def test_lastfm_unseen_users(shared_data_dir, lastfm):
    data = load_named_dataset("lastfm", shared_data_dir, unseen_user_fraction=0.05)
    lengths = [len(lastfm.train[user]) + 2 for user in range(lastfm.num_users)]

    assert len(data.unseen_users) == 54
    assert max(lengths[user] for user in data.unseen_users) <= min(lengths[user] for user in data.seen_users)
    assert data.train == lastfm.train
