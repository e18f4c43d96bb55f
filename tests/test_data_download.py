"""Tests for checksum-verified dataset downloads, against an HTTP server on 127.0.0.1 in a thread."""

import hashlib
import http.server
import threading
import zipfile
from functools import partial

import pytest

from tokenrec_hf.data import DATA_DIR_ENV, ChecksumMismatchError, download_file, load_named_dataset

SEQUENCES = b"1 1 2 3\n2 2 3 4 5\n3 1 3 5\n"
SEQUENCES_SHA256 = hashlib.sha256(SEQUENCES).hexdigest()


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        CountingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """Serve `tmp_path / "www"` on 127.0.0.1 and yield `(base_url, request_log)`."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "user_sequence.txt").write_bytes(SEQUENCES)
    CountingHandler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(CountingHandler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", CountingHandler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_then_reuse_cache(server, tmp_path):
    base_url, requests = server
    destination = tmp_path / "cache" / "user_sequence.txt"

    first = download_file(f"{base_url}/user_sequence.txt", destination, SEQUENCES_SHA256, disable_progress_bar=True)
    second = download_file(f"{base_url}/user_sequence.txt", destination, SEQUENCES_SHA256, disable_progress_bar=True)

    assert first == second == destination
    assert destination.read_bytes() == SEQUENCES
    assert requests == ["/user_sequence.txt"]


def test_download_checksum_mismatch_deletes_file(server, tmp_path):
    base_url, _ = server
    cache = tmp_path / "cache"
    wrong = "0" * 64

    with pytest.raises(ChecksumMismatchError, match=rf"expected sha256 {wrong}, got {SEQUENCES_SHA256}.*was deleted"):
        download_file(f"{base_url}/user_sequence.txt", cache / "user_sequence.txt", wrong, disable_progress_bar=True)

    assert list(cache.iterdir()) == []


def test_download_corrupted_cache_is_replaced(server, tmp_path):
    base_url, requests = server
    destination = tmp_path / "cache" / "user_sequence.txt"
    destination.parent.mkdir()
    destination.write_bytes(b"truncated")

    download_file(f"{base_url}/user_sequence.txt", destination, SEQUENCES_SHA256, disable_progress_bar=True)

    assert destination.read_bytes() == SEQUENCES
    assert len(requests) == 1


def test_download_missing_url(server, tmp_path):
    base_url, _ = server

    with pytest.raises(OSError, match=r"Could not download .*/absent\.txt .*data_dir="):
        download_file(f"{base_url}/absent.txt", tmp_path / "absent.txt", SEQUENCES_SHA256, disable_progress_bar=True)


def test_named_dataset_download_and_offline_reuse(server, tmp_path, monkeypatch):
    base_url, requests = server
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = tmp_path / "cache"
    options = {"url": f"{base_url}/user_sequence.txt", "expected_sha256": SEQUENCES_SHA256, "cache_dir": cache}

    downloaded = load_named_dataset("lastfm", download=True, **options)
    cached = load_named_dataset("lastfm", **options)

    assert downloaded.num_users == cached.num_users == 3
    assert downloaded.item_ids == cached.item_ids
    assert requests == ["/user_sequence.txt"]
    assert (cache / "lastfm" / SEQUENCES_SHA256 / "user_sequence.txt").is_file()


def test_named_dataset_pinned_checksum_mismatch(server, tmp_path, monkeypatch):
    base_url, _ = server
    cache = tmp_path / "cache"
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)

    # The served file is not the pinned LastFM file, so the pinned sha256 rejects it.
    with pytest.raises(ChecksumMismatchError, match=r"Checksum mismatch .*expected sha256 a71f8c3d.*deleted"):
        load_named_dataset("lastfm", download=True, url=f"{base_url}/user_sequence.txt", cache_dir=cache)

    assert [path for path in cache.rglob("*") if path.is_file()] == []


def test_named_ml1m_download_reads_zip(server, tmp_path, monkeypatch):
    base_url, requests = server
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    lines = [f"{user}::{movie}::4::{user * 10 + movie}" for user in range(1, 6) for movie in (1, 2, 3)]
    lines.append("1::99::5::1000")
    archive_path = tmp_path / "www" / "ml-1m.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("ml-1m/ratings.dat", "\n".join(lines) + "\n")
    sha256 = hashlib.sha256(archive_path.read_bytes()).hexdigest()

    data = load_named_dataset(
        "ml1m", download=True, url=f"{base_url}/ml-1m.zip", expected_sha256=sha256, cache_dir=tmp_path / "cache"
    )

    assert requests == ["/ml-1m.zip"]
    assert data.num_users == 5
    assert data.item_ids == ["1", "2", "3"]
    assert data.source.endswith("ml-1m.zip!ml-1m/ratings.dat")
