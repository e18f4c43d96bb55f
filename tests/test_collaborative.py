"""Tests for LightGCN / MF collaborative filtering: propagation, training, fold-in, saving and bad input."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from huggingface_hub.errors import EntryNotFoundError

from tokenrec_hf.collaborative import (
    CollaborativeConfig,
    CollaborativeModel,
    CollaborativeTrainingArguments,
    LightGCNPropagation,
    build_graph_for,
    build_interaction_graph,
    evaluate_collaborative,
    propagate_autograd,
    train_collaborative,
)
from tokenrec_hf.data import InteractionData

NUM_GROUPS, USERS_PER_GROUP, ITEMS_PER_GROUP = 3, 12, 10


def _clustered_data(unseen_users: list[int] | None = None) -> InteractionData:
    """Users in group g interact only with the items of group g, so a working model ranks group items first."""
    generator = torch.Generator().manual_seed(7)
    train, valid, test = [], [], []
    for group in range(NUM_GROUPS):
        group_items = [group * ITEMS_PER_GROUP + offset for offset in range(ITEMS_PER_GROUP)]
        for _ in range(USERS_PER_GROUP):
            order = torch.randperm(ITEMS_PER_GROUP, generator=generator)[:8].tolist()
            sequence = [group_items[position] for position in order]
            train.append(sequence[:-2])
            valid.append(sequence[-2])
            test.append(sequence[-1])
    num_users = NUM_GROUPS * USERS_PER_GROUP
    return InteractionData(
        name="clusters",
        user_ids=[f"u{index}" for index in range(num_users)],
        item_ids=[f"i{index}" for index in range(NUM_GROUPS * ITEMS_PER_GROUP)],
        train=train,
        valid=valid,
        test=test,
        unseen_users=unseen_users,
    )


def _config(data: InteractionData, architecture: str = "lightgcn", **kwargs) -> CollaborativeConfig:
    return CollaborativeConfig(
        architecture=architecture,
        num_users=data.num_users,
        num_items=data.num_items,
        embedding_dim=kwargs.pop("embedding_dim", 8),
        num_layers=kwargs.pop("num_layers", 2),
        **kwargs,
    )


def _args(**kwargs) -> CollaborativeTrainingArguments:
    defaults = {
        "num_epochs": 30,
        "batch_size": 64,
        "learning_rate": 0.05,
        "reg_weight": 1e-4,
        "eval_interval": 5,
        "patience": 100,
        "ks": (5, 10),
        "metric_for_best_model": "ndcg@10",
        "disable_tqdm": True,
        "save_plot": False,
    }
    defaults.update(kwargs)
    return CollaborativeTrainingArguments(**defaults)


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    # Two intra-op threads on a busy 2-core machine made LastFM training about 100 times slower than one thread.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data() -> InteractionData:
    return _clustered_data()


@pytest.fixture(scope="module")
def trained_lightgcn(data):
    return train_collaborative(_config(data), data, _args(seed=0))


# Graph and propagation.


def test_adjacency_symmetric_normalized():
    users = torch.tensor([0, 0, 1, 1, 1])
    items = torch.tensor([0, 1, 1, 0, 1])  # (1, 1) is a duplicate and counts once

    graph = build_interaction_graph(users, items, num_users=2, num_items=3)
    dense = graph.adjacency.to_dense()

    assert torch.equal(graph.user_degrees, torch.tensor([2.0, 2.0]))
    assert torch.equal(graph.item_degrees, torch.tensor([2.0, 2.0, 0.0]))
    assert torch.allclose(dense, dense.T)
    assert dense[0, 2 + 1].item() == pytest.approx(1 / (2 * 2) ** 0.5)
    assert torch.all(dense[4] == 0)


def test_fused_propagation_gradient_matches_autograd():
    users = torch.tensor([0, 0, 1, 2, 2, 3])
    items = torch.tensor([0, 2, 1, 1, 3, 0])
    csr = build_interaction_graph(users, items, 4, 4, layout="csr").adjacency
    coo = build_interaction_graph(users, items, 4, 4, layout="coo").adjacency
    embeddings = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
    weights = torch.randn(8, 5, generator=torch.Generator().manual_seed(1))

    fused_input = embeddings.clone().requires_grad_(True)
    fused = LightGCNPropagation.apply(fused_input, csr, 3)
    (fused * weights).sum().backward()
    plain_input = embeddings.clone().requires_grad_(True)
    plain = propagate_autograd(coo, plain_input, 3)
    (plain * weights).sum().backward()

    assert torch.allclose(fused, plain, atol=1e-6)
    assert torch.allclose(fused_input.grad, plain_input.grad, atol=1e-6)


def test_representations_are_propagated_mean(trained_lightgcn, data):
    model = trained_lightgcn.model
    graph = build_graph_for(data, layout="coo")

    expected = propagate_autograd(graph.adjacency, model.ego_embeddings().detach(), model.config.num_layers)

    assert torch.allclose(model.user_representations, expected[: data.num_users], atol=1e-6)
    assert torch.allclose(model.item_representations, expected[data.num_users :], atol=1e-6)
    assert not torch.allclose(model.user_representations, model.user_embedding.weight, atol=1e-3)


def test_unpropagated_lightgcn_error(data):
    model = CollaborativeModel(_config(data))

    with pytest.raises(RuntimeError, match="no propagated layers yet"):
        _ = model.user_representations


# Training.


def test_training_learns_clusters(trained_lightgcn, data):
    result = trained_lightgcn
    random_hr_at_5 = 5 / (data.num_items - 6)

    assert result.validation["hr@5"] > 3 * random_hr_at_5
    assert result.test["hr@5"] > 3 * 5 / (data.num_items - 7)
    assert set(result.test) == {"hr@5", "hr@10", "ndcg@5", "ndcg@10"}
    assert result.best_epoch in {record["epoch"] for record in result.history}
    assert result.history[0]["loss"] > result.history[-1]["loss"]


def test_training_reproducible_for_seed(data):
    first = train_collaborative(_config(data), data, _args(num_epochs=4, eval_interval=2, seed=3)).model
    second = train_collaborative(_config(data), data, _args(num_epochs=4, eval_interval=2, seed=3)).model
    other = train_collaborative(_config(data), data, _args(num_epochs=4, eval_interval=2, seed=4)).model

    assert torch.equal(first.user_embedding.weight, second.user_embedding.weight)
    assert torch.equal(first.item_representations, second.item_representations)
    assert not torch.equal(first.user_embedding.weight, other.user_embedding.weight)


def test_unseen_users_stay_out_of_training():
    data = _clustered_data(unseen_users=[0, 13])
    model = CollaborativeModel(_config(data))
    model.reset_parameters(torch.Generator().manual_seed(0))
    before = model.user_embedding.weight.detach().clone()

    result = train_collaborative(model, data, _args(num_epochs=3, eval_interval=3))

    after = result.model.user_embedding.weight
    assert torch.equal(after[[0, 13]], before[[0, 13]])
    assert not torch.equal(after[[1, 2]], before[[1, 2]])
    assert result.model.user_degrees[[0, 13]].tolist() == [0.0, 0.0]


def test_early_stopping_on_patience(data):
    # A learning rate this small leaves the validation metric unchanged, so it never improves after the first check.
    result = train_collaborative(
        _config(data), data, _args(num_epochs=50, eval_interval=1, patience=2, learning_rate=1e-12)
    )

    assert result.stopped_early
    assert result.epochs_trained == 3
    assert result.best_epoch == 1


def test_mf_training_learns_clusters(data):
    result = train_collaborative(_config(data, "mf"), data, _args(seed=0))

    assert result.model.config.num_layers == 0
    assert result.validation["hr@5"] > 3 * 5 / (data.num_items - 6)
    assert torch.equal(result.model.user_representations, result.model.user_embedding.weight)


def test_resume_equals_uninterrupted(data, tmp_path):
    uninterrupted = train_collaborative(_config(data), data, _args(num_epochs=6, eval_interval=2, seed=5)).model

    train_collaborative(_config(data), data, _args(num_epochs=4, eval_interval=2, seed=5, output_dir=str(tmp_path)))
    checkpoint = tmp_path / "checkpoint"
    assert sorted(path.name for path in checkpoint.iterdir()) == [
        "optimizer.pt",
        "trainer_state.json",
        "trainer_tensors.safetensors",
    ]
    resumed = train_collaborative(
        _config(data),
        data,
        _args(num_epochs=6, eval_interval=2, seed=5, output_dir=str(tmp_path), resume_from_checkpoint=True),
    ).model

    assert torch.equal(resumed.user_embedding.weight, uninterrupted.user_embedding.weight)
    assert torch.equal(resumed.item_embedding.weight, uninterrupted.item_embedding.weight)
    assert json.loads((checkpoint / "trainer_state.json").read_text())["epoch"] == 6


def test_resume_with_other_setup_error(data, tmp_path):
    train_collaborative(_config(data), data, _args(num_epochs=2, eval_interval=2, output_dir=str(tmp_path)))

    with pytest.raises(ValueError, match="written with batch_size=64 but this run has batch_size=32"):
        train_collaborative(
            _config(data),
            data,
            _args(num_epochs=4, batch_size=32, output_dir=str(tmp_path), resume_from_checkpoint=True),
        )


def test_model_data_size_mismatch_error(data):
    config = CollaborativeConfig(num_users=5, num_items=data.num_items, embedding_dim=8)

    with pytest.raises(ValueError, match="dataset has 36 users and 30 items but the model was built for 5 and 30"):
        train_collaborative(config, data, _args())


def test_config_validation_errors():
    with pytest.raises(ValueError, match="architecture='gcn' is not supported"):
        CollaborativeConfig(architecture="gcn")
    with pytest.raises(ValueError, match="embedding_dim=0 must be a positive integer"):
        CollaborativeConfig(embedding_dim=0)
    with pytest.raises(ValueError, match="metric_for_best_model='recall@20'"):
        CollaborativeTrainingArguments(metric_for_best_model="recall@20")


# Fold-in.


def _cosine(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(first, second, dim=-1)


def test_lightgcn_fold_in_matches_trained_users(trained_lightgcn, data):
    model = trained_lightgcn.model
    users = list(range(data.num_users))

    folded = model.fold_in_users([data.train[user] for user in users])

    assert folded.shape == (data.num_users, 8)
    assert _cosine(folded, model.user_representations).mean() > 0.9
    folded_metrics = evaluate_collaborative(model, data, "valid", ks=(5, 10), user_embeddings=folded)
    assert folded_metrics["hr@5"] > 3 * 5 / (data.num_items - 6)


def test_lightgcn_fold_in_accepts_raw_ids(trained_lightgcn, data):
    model = trained_lightgcn.model
    history = data.train[4]

    by_index = model.fold_in_users([history])
    by_raw_id = model.fold_in_users([[data.item_ids[item] for item in history]])

    assert torch.equal(by_index, by_raw_id)


def test_lightgcn_fold_in_items_matches_trained_items(trained_lightgcn, data):
    model = trained_lightgcn.model
    graph_users, graph_items = data.train_pairs()
    user_lists = [graph_users[graph_items == item].tolist() for item in range(data.num_items)]

    folded = model.fold_in_items(user_lists)

    assert _cosine(folded, model.item_representations).mean() > 0.9


def test_mf_fold_in_deterministic_and_useful(data):
    model = train_collaborative(_config(data, "mf", fold_in_steps=30), data, _args(seed=0)).model
    histories = [data.train[user] for user in range(data.num_users)]

    first = model.fold_in_users(histories)
    second = model.fold_in_users(histories)
    metrics = evaluate_collaborative(model, data, "valid", ks=(5, 10), user_embeddings=first)

    assert torch.equal(first, second)
    assert metrics["hr@5"] > 3 * 5 / (data.num_items - 6)
    assert model.fold_in_items([[0, 1, 2]]).shape == (1, 8)


@pytest.mark.parametrize(
    ("histories", "message"),
    [
        ([[1, 2], []], "Entry 1 has no items"),
        ([["i3", "i999"]], "Unknown item id 'i999' in entry 0"),
        ([[1, 30]], "Item index 30 in entry 0 is outside \\[0, 30\\)"),
        (["i3"], "Entry 0 is 'i3'; pass a list"),
    ],
)
def test_fold_in_bad_input_errors(trained_lightgcn, histories, message):
    with pytest.raises(ValueError, match=message):
        trained_lightgcn.model.fold_in_users(histories)


def test_fold_in_items_unknown_user_error(trained_lightgcn):
    with pytest.raises(ValueError, match="Unknown user id 'nobody'"):
        trained_lightgcn.model.fold_in_items([["nobody"]])


# Saving and loading.


def test_save_load_round_trip(trained_lightgcn, tmp_path):
    model = trained_lightgcn.model
    model.save_pretrained(tmp_path / "model")

    loaded = CollaborativeModel.from_pretrained(tmp_path / "model")

    assert sorted(path.name for path in (tmp_path / "model").iterdir()) == [
        "config.json",
        "id_maps.json",
        "model.safetensors",
    ]
    assert loaded.user_ids == model.user_ids
    assert loaded.item_ids == model.item_ids
    assert torch.equal(loaded.user_representations, model.user_representations)
    assert torch.equal(loaded.item_representations, model.item_representations)
    assert torch.equal(loaded.fold_in_users([[1, 2, 3]]), model.fold_in_users([[1, 2, 3]]))


def test_save_records_package_version(trained_lightgcn, tmp_path):
    from tokenrec_hf import __version__

    trained_lightgcn.model.save_pretrained(tmp_path)

    assert json.loads((tmp_path / "config.json").read_text())["tokenrec_hf_version"] == __version__


def test_load_missing_file_error(trained_lightgcn, tmp_path):
    trained_lightgcn.model.save_pretrained(tmp_path)
    (tmp_path / "id_maps.json").unlink()

    with pytest.raises(FileNotFoundError, match="missing \\['id_maps.json'\\]"):
        CollaborativeModel.from_pretrained(tmp_path)


def test_load_corrupted_weights_error(trained_lightgcn, tmp_path):
    trained_lightgcn.model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    with pytest.raises(ValueError, match="model.safetensors is not a readable safetensors file"):
        CollaborativeModel.from_pretrained(tmp_path)


def test_load_corrupted_id_maps_error(trained_lightgcn, tmp_path):
    trained_lightgcn.model.save_pretrained(tmp_path)
    (tmp_path / "id_maps.json").write_text('{"user_ids": [')

    with pytest.raises(ValueError, match="id_maps.json is not valid JSON"):
        CollaborativeModel.from_pretrained(tmp_path)


def test_load_mismatched_config_error(trained_lightgcn, tmp_path):
    trained_lightgcn.model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["embedding_dim"] = 16
    (tmp_path / "config.json").write_text(json.dumps(config))

    with pytest.raises(ValueError, match="shape \\[36, 8\\] but the config expects \\[36, 16\\]"):
        CollaborativeModel.from_pretrained(tmp_path)


def test_push_to_hub_uploads_artifact_files(trained_lightgcn):
    api = mock.MagicMock()
    api.create_repo.return_value.repo_id = "user/collaborative"
    uploaded: list[str] = []

    def record_commit(repo_id, operations, **kwargs):
        for operation in operations:
            assert Path(operation.path_or_fileobj).is_file()
            uploaded.append(operation.path_in_repo)

    api.create_commit.side_effect = record_commit
    with (
        mock.patch("transformers.utils.hub.hf_api", return_value=api),
        mock.patch("transformers.utils.hub.ModelCard.load", side_effect=EntryNotFoundError("no card")),
    ):
        trained_lightgcn.model.push_to_hub("user/collaborative")

    assert api.create_commit.call_count == 1
    assert {"config.json", "model.safetensors", "id_maps.json"} <= set(uploaded)


# Real data.


@pytest.mark.shared_data
def test_lastfm_short_training(shared_data_dir):
    from tokenrec_hf.data import load_named_dataset

    data = load_named_dataset("lastfm", shared_data_dir / "LastFM")
    config = CollaborativeConfig(num_users=data.num_users, num_items=data.num_items)
    args = CollaborativeTrainingArguments(num_epochs=20, eval_interval=10, learning_rate=5e-3, disable_tqdm=True)

    result = train_collaborative(config, data, args)
    folded = result.model.fold_in_users([data.train[user] for user in data.seen_users])
    folded_metrics = evaluate_collaborative(result.model, data, "valid", user_embeddings=folded)

    # Random ranking would give HR@20 of about 20 / 3,600 = 0.006.
    assert result.validation["hr@20"] > 0.05
    assert _cosine(folded, result.model.user_representations[data.seen_users]).mean() > 0.9
    assert folded_metrics["hr@20"] > 0.03
