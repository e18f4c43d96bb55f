"""Run the Python snippets of docs/quickstart.md and docs/howto/*.md on tiny synthetic data, so the docs cannot rot.

Each test follows one page, in the page's order, with tiny sizes in place of the documented ones: a T5 of d_model 32
with 2 layers, 16-dimensional collaborative embeddings, K=3 codebooks of L=8 codewords, and two epochs per stage.
Only the Hub's servers are mocked, in the sharing test.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import datasets
import pandas as pd
import pytest
import torch
from huggingface_hub import CommitOperationAdd, HfApi
from peft import PeftModel
from transformers import AutoModel, AutoTokenizer, T5Config

from tokenrec_hf import (
    CollaborativeConfig,
    CollaborativeModel,
    CollaborativeTrainingArguments,
    MQTokenizer,
    MQTokenizerConfig,
    MQTokenizerTrainingArguments,
    TokenRecForRetrieval,
    TokenRecTokenizer,
    TokenRecTrainer,
    TokenRecTrainingArguments,
    apply_lora,
    train_collaborative,
    train_mq_tokenizer,
)
from tokenrec_hf.cli import main as tokenrec_main
from tokenrec_hf.data import (
    InteractionData,
    from_hf_dataset,
    from_movielens_ratings,
    from_recbole_inter,
    from_sequence_file,
    from_table,
)
from tokenrec_hf.modelcard import TokenRecModelCardData
from tokenrec_hf.utils import HubUnreachableError

NUM_USERS, NUM_ITEMS = 40, 50
EMBEDDING_DIM = 16


def tiny_backbone(tokenizer: TokenRecTokenizer) -> T5Config:
    return T5Config(vocab_size=len(tokenizer), d_model=32, d_ff=64, num_layers=2, num_heads=4, d_kv=8)


def write_sequence_file(path: Path) -> Path:
    """Write `user item item ...` lines: user u<n> with 5 to 12 distinct items i<m>, oldest first."""
    rng = random.Random(0)
    lines = []
    for user in range(NUM_USERS):
        items = rng.sample(range(NUM_ITEMS), rng.randint(5, 12))
        lines.append(" ".join([f"u{user}", *(f"i{item}" for item in items)]))
    path.write_text("\n".join(lines) + "\n")
    return path


def two_step_arguments(output_dir, **overrides) -> TokenRecTrainingArguments:
    """Build arguments for two quiet training steps with no evaluation, checkpoints or plots."""
    settings = {
        "output_dir": str(output_dir),
        "max_steps": 2,
        "per_device_train_batch_size": 8,
        "save_strategy": "no",
        "eval_strategy": "no",
        "load_best_model_at_end": False,
        "plot_training_curves": False,
        "report_to": "none",
        "disable_tqdm": True,
    }
    settings.update(overrides)
    return TokenRecTrainingArguments(**settings)


def build_stages(data: InteractionData, base_tokenizer: str | Path, output_dir: Path):
    """The "run the stages in Python" snippet of docs/howto/your_own_data.md, at tiny sizes."""
    # 1. Collaborative filtering.
    config = CollaborativeConfig(
        architecture="lightgcn",
        num_users=data.num_users,
        num_items=data.num_items,
        embedding_dim=EMBEDDING_DIM,
        num_layers=2,
    )
    cf_args = CollaborativeTrainingArguments(
        output_dir=str(output_dir / "cf"), num_epochs=2, eval_interval=1, evaluate_test=False, disable_tqdm=True
    )
    collaborative = train_collaborative(config, data, cf_args).model
    users = collaborative.user_representations.detach().clone()
    items = collaborative.item_representations.detach().clone()

    # 2. MQ-Tokenizers, the user one on seen users only.
    mq_config = MQTokenizerConfig(
        input_dim=EMBEDDING_DIM,
        num_codebooks=3,
        codebook_size=8,
        codebook_dim=8,
        encoder_hidden_sizes=[32],
        decoder_hidden_sizes=[32],
    )
    mq_args = MQTokenizerTrainingArguments(num_train_epochs=2, disable_tqdm=True)
    user_mq, _ = train_mq_tokenizer(users[data.seen_users], MQTokenizerConfig.from_dict(mq_config.to_dict()), mq_args)
    item_mq, _ = train_mq_tokenizer(items, MQTokenizerConfig.from_dict(mq_config.to_dict()), mq_args)

    # 3. The tokenizer, then the model around a randomly initialized T5.
    tokenizer = TokenRecTokenizer.from_quantizers(
        str(base_tokenizer),
        user_mq,
        item_mq,
        user_embeddings=users,
        item_embeddings=items,
        user_ids=data.user_ids,
        item_ids=data.item_ids,
    )
    torch.manual_seed(0)
    model = TokenRecForRetrieval.from_backbone(
        tiny_backbone(tokenizer), tokenizer, item_embeddings=items, projection_hidden_sizes=(32, 32)
    )

    # 4. Fine-tuning with the cosine margin loss: two steps, without the per-epoch validation of the docs.
    args = two_step_arguments(
        output_dir / "llm", num_train_epochs=1, per_device_eval_batch_size=16, learning_rate=1e-3
    )
    trainer = TokenRecTrainer(model=model, args=args, data=data, processing_class=tokenizer)
    return collaborative, tokenizer, model, trainer


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_t5_tokenizer_dir):
    """Every stage once, saved the way `tokenrec run` saves its output folder."""
    folder = tmp_path_factory.mktemp("docs_snippets")
    data = from_sequence_file(write_sequence_file(folder / "user_sequence.txt"), name="tiny")
    collaborative, tokenizer, model, trainer = build_stages(data, tiny_t5_tokenizer_dir, folder)
    before = model.projection.layers[0].weight.detach().clone()
    trainer.train()
    metrics = trainer.evaluate()

    output = folder / "output"
    model.save_pretrained(output, tokenizer=tokenizer)
    collaborative.save_pretrained(output / "collaborative")
    data.save_pretrained(output / "data")
    return SimpleNamespace(
        data=data,
        output=output,
        metrics=metrics,
        projection_before=before,
        model=model,
        tokenizer=tokenizer,
        collaborative=collaborative,
    )


# ----- docs/howto/your_own_data.md -----


def test_readers_load_each_format(tmp_path):
    sequence = from_sequence_file(write_sequence_file(tmp_path / "user_sequence.txt"))
    assert sequence.num_users == NUM_USERS

    (tmp_path / "ratings.dat").write_text(
        "".join(f"{user}::{item}::{1 + (user + item) % 5}::{1000 + item}\n" for user in (1, 2) for item in range(1, 6))
    )
    movielens = from_movielens_ratings(tmp_path / "ratings.dat", min_rating=2)
    assert movielens.num_users == 2
    assert movielens.num_interactions < 10

    (tmp_path / "shop.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        + "".join(f"u{user}\tp{item}\t5\t{100 - item}\n" for user in range(3) for item in range(4))
    )
    recbole = from_recbole_inter(tmp_path / "shop.inter")
    # Sorted by timestamp, so each user's oldest item is p3 and the test target p0.
    assert recbole.train[0][0] == recbole.item_index("p3")
    assert recbole.item_ids[recbole.test[0]] == "p0"

    events = pd.DataFrame(
        {
            "customer": [f"c{user}" for user in range(4) for _ in range(5)],
            "product": [f"sku{(user * 3 + step) % 9}" for user in range(4) for step in range(5)],
            "time": [user * 10 + step for user in range(4) for step in range(5)],
            "stars": [4.0] * 20,
        }
    )
    events.to_csv(tmp_path / "events.csv", index=False)
    events.to_csv(tmp_path / "events.tsv", index=False, sep="\t")
    events.to_parquet(tmp_path / "events.parquet")
    columns = {"user_column": "customer", "item_column": "product", "timestamp_column": "time"}
    for name in ("events.csv", "events.tsv", "events.parquet"):
        table = from_table(tmp_path / name, **columns, rating_column="stars", min_rating=4)
        assert table.num_users == 4, name
        assert table.num_interactions == 20, name

    hub_events = datasets.Dataset.from_pandas(events)
    assert from_hf_dataset(hub_events, **columns).num_interactions == 20
    hub_sequences = datasets.Dataset.from_dict({"user_id": ["a", "b"], "item_id": [["x", "y", "z"], ["y", "z", "w"]]})
    assert from_hf_dataset(hub_sequences).num_users == 2


def test_filters_and_split(tmp_path):
    path = write_sequence_file(tmp_path / "user_sequence.txt")
    data = from_sequence_file(path, k_core=5, max_sequence_length=8, unseen_user_fraction=0.1)

    assert all(len(data.train[user]) + 2 <= 8 for user in range(data.num_users))
    assert len(data.unseen_users) == int(0.1 * data.num_users)
    user = data.seen_users[0]
    assert data.history(user, "test") == data.train[user] + [data.valid[user]]
    splits = data.to_hf_datasets()
    assert sorted(splits) == ["test", "train", "validation"]
    assert splits["validation"].num_rows == data.num_users


def test_stages_in_python(trained):
    assert not torch.equal(trained.model.projection.layers[0].weight, trained.projection_before)
    assert 0.0 <= trained.metrics["eval_ndcg@20"] <= 1.0
    assert sorted(path.name for path in trained.output.iterdir()) == [
        "README.md",
        "collaborative",
        "config.json",
        "data",
        "item_codes.safetensors",
        "item_ids.json",
        "item_quantizer",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "tokenrec_tokenizer_config.json",
        "user_codes.safetensors",
        "user_ids.json",
        "user_quantizer",
    ]


# ----- docs/quickstart.md -----


def test_quickstart_python_api(trained):
    folder = trained.output
    tokenizer = TokenRecTokenizer.from_pretrained(folder)
    model = TokenRecForRetrieval.from_pretrained(folder).eval()
    data = InteractionData.from_pretrained(folder / "data")
    collaborative = CollaborativeModel.from_pretrained(folder / "collaborative")

    user = data.user_ids[0]
    history = [data.item_ids[item] for item in data.history(data.user_index(user), "test")]
    known = model.recommend(tokenizer, users=[user], histories=[history], top_k=10)
    assert len(known.item_ids[0]) == 10
    assert not set(known.item_ids[0]) & set(history)
    assert known.scores.shape == (1, 10)

    new_history = ["i3", "i17", "i29"]
    new = model.recommend(tokenizer, histories=[new_history], top_k=10, collaborative_model=collaborative)
    assert not set(new.item_ids[0]) & set(new_history)


def test_quickstart_recommend_command(trained, capsys):
    user = trained.data.user_ids[0]
    assert tokenrec_main(["recommend", "--model_dir", str(trained.output), "--user", user, "--top_k", "5"]) == 0
    assert tokenrec_main(["recommend", "--model_dir", str(trained.output), "--history", "i3", "i17"]) == 0
    printed = capsys.readouterr().out
    assert f"Top-5 for {user}:" in printed
    assert "Top-10 for new user:" in printed

    assert tokenrec_main(["recommend", "--model_dir", str(trained.output), "--user", "nobody"]) == 1
    assert "--history ITEM" in capsys.readouterr().err


# ----- docs/howto/new_users_and_items.md -----


def test_new_users_and_items(trained):
    folder = trained.output
    tokenizer = TokenRecTokenizer.from_pretrained(folder)
    model = TokenRecForRetrieval.from_pretrained(folder).eval()
    collaborative = CollaborativeModel.from_pretrained(folder / "collaborative")
    vocabulary_before = len(tokenizer)
    weights_before = {name: tensor.clone() for name, tensor in model.state_dict().items() if name != "item_embeddings"}
    num_items_before = model.config.num_items

    # New users: fold in from raw item ids, tokenize with the frozen user MQ-Tokenizer.
    histories = [["i1", "i4", "i9"], ["i2", "i30"]]
    user_embeddings = collaborative.fold_in_users(histories)
    tokenizer.add_users(user_embeddings, ["alice", "bob"])
    by_id = model.recommend(tokenizer, users=["alice", "bob"], histories=histories, top_k=5)
    assert [len(row) for row in by_id.item_ids] == [5, 5]

    # New items: fold in from the users who interacted with them, then add to the tokenizer and the item table.
    item_embeddings = collaborative.fold_in_items([["u0", "u3"], ["u5"]])
    tokenizer.add_items(item_embeddings, ["new_item_a", "new_item_b"])
    model.add_item_embeddings(item_embeddings)
    assert model.config.num_items == num_items_before + 2
    everything = model.recommend(tokenizer, user_embeddings=user_embeddings, top_k=model.config.num_items)
    assert "new_item_a" in everything.item_ids[0]

    # A new item can sit in a history; the fold-in then uses the item table's mean (no collaborative_model).
    with_new_item = model.recommend(tokenizer, histories=[["i1", "new_item_a"]], top_k=5)
    assert "new_item_a" not in with_new_item.item_ids[0]

    # Nothing was retrained: same vocabulary, same weights.
    assert len(tokenizer) == vocabulary_before
    for name, tensor in model.state_dict().items():
        if name != "item_embeddings":
            assert torch.equal(tensor, weights_before[name]), name

    # The extended tokenizer and model save and load together.
    model.save_pretrained(folder.parent / "extended", tokenizer=tokenizer)
    reloaded = TokenRecTokenizer.from_pretrained(folder.parent / "extended")
    assert reloaded.user_ids[-2:] == ["alice", "bob"]
    assert TokenRecForRetrieval.from_pretrained(folder.parent / "extended").config.num_items == num_items_before + 2


# ----- docs/howto/lora.md -----


def test_lora_train_save_reload(trained, tmp_path):
    tokenizer = TokenRecTokenizer.from_pretrained(trained.output)
    base = TokenRecForRetrieval.from_pretrained(trained.output)
    base.save_pretrained(tmp_path / "base", tokenizer=tokenizer)

    model = apply_lora(base, r=4, alpha=8, target_modules=("q", "v"))
    model.print_trainable_parameters()
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert any("lora_A" in name for name in trainable)
    assert any("trainable_tokens_delta" in name for name in trainable)
    assert any("projection.modules_to_save" in name for name in trainable)
    assert not any(name.endswith("shared.weight") for name in trainable)

    args = two_step_arguments(tmp_path / "lora", learning_rate=1e-2)
    trainer = TokenRecTrainer(model=model, args=args, data=trained.data, processing_class=tokenizer)
    trainer.train()
    model.save_pretrained(tmp_path / "adapter")
    assert sorted(path.name for path in (tmp_path / "adapter").iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
    ]

    model.eval()
    expected = model.recommend(tokenizer, users=[trained.data.user_ids[1]], top_k=5)
    reloaded = PeftModel.from_pretrained(
        TokenRecForRetrieval.from_pretrained(tmp_path / "base"), tmp_path / "adapter"
    ).eval()
    actual = reloaded.recommend(tokenizer, users=[trained.data.user_ids[1]], top_k=5)
    assert actual.item_ids == expected.item_ids
    torch.testing.assert_close(actual.scores, expected.scores)

    merged = reloaded.merge_and_unload()
    merged.save_pretrained(tmp_path / "merged", tokenizer=tokenizer)
    plain = TokenRecForRetrieval.from_pretrained(tmp_path / "merged").eval()
    assert plain.recommend(tokenizer, users=[trained.data.user_ids[1]], top_k=5).item_ids == expected.item_ids


# ----- docs/howto/sharing_on_the_hub.md -----


@pytest.fixture
def mocked_hub():
    uploads: dict[str, dict[str, bytes]] = {}

    def create_repo(self, repo_id, **kwargs):
        return SimpleNamespace(repo_id=repo_id)

    def create_commit(self, repo_id, operations, **kwargs):
        files = uploads.setdefault(repo_id, {})
        for operation in operations:
            if isinstance(operation, CommitOperationAdd):
                with open(operation.path_or_fileobj, "rb") as handle:
                    files[operation.path_in_repo] = handle.read()
        return SimpleNamespace(commit_url=f"https://huggingface.co/{repo_id}/commit/0")

    with (
        mock.patch.object(HfApi, "create_repo", create_repo),
        mock.patch.object(HfApi, "create_commit", create_commit),
        mock.patch.object(HfApi, "preupload_lfs_files", lambda self, *args, **kwargs: None),
    ):
        yield uploads


def test_push_each_artifact(trained, mocked_hub, tmp_path):
    folder = trained.output
    tokenizer = TokenRecTokenizer.from_pretrained(folder)
    model = TokenRecForRetrieval.from_pretrained(folder)
    collaborative = CollaborativeModel.from_pretrained(folder / "collaborative")
    item_mq = MQTokenizer.from_pretrained(folder / "item_quantizer")

    model.model_card_data = TokenRecModelCardData(
        dataset_name="tiny", metrics={"hr@20": 0.31, "ndcg@20": 0.12}, license="apache-2.0"
    )
    model.push_to_hub("someone/tokenrec-tiny", tokenizer=tokenizer, private=True)
    tokenizer.push_to_hub("someone/tokenrec-tiny-tokenizer")
    collaborative.push_to_hub("someone/tokenrec-tiny-lightgcn")
    item_mq.push_to_hub("someone/tokenrec-tiny-item-mq")
    tokenizer.save_pretrained(tmp_path / "tokenizer", push_to_hub=True, repo_id="someone/tokenrec-tiny-tokenizer-2")

    assert {"config.json", "model.safetensors", "README.md", "tokenrec_tokenizer_config.json"} <= set(
        mocked_hub["someone/tokenrec-tiny"]
    )
    assert "user_quantizer/model.safetensors" in mocked_hub["someone/tokenrec-tiny"]
    assert {"config.json", "model.safetensors", "id_maps.json"} <= set(mocked_hub["someone/tokenrec-tiny-lightgcn"])
    assert {"config.json", "model.safetensors"} <= set(mocked_hub["someone/tokenrec-tiny-item-mq"])
    assert "item_codes.safetensors" in mocked_hub["someone/tokenrec-tiny-tokenizer"]
    assert "item_codes.safetensors" in mocked_hub["someone/tokenrec-tiny-tokenizer-2"]
    card = mocked_hub["someone/tokenrec-tiny"]["README.md"].decode()
    assert "library_name: tokenrec_hf" in card
    assert "license: apache-2.0" in card
    assert "0.31" in card

    # What was uploaded loads back like the original.
    download = tmp_path / "download"
    for name, content in mocked_hub["someone/tokenrec-tiny"].items():
        (download / name).parent.mkdir(parents=True, exist_ok=True)
        (download / name).write_bytes(content)
    loaded = AutoModel.from_pretrained(download)
    assert isinstance(AutoTokenizer.from_pretrained(download), TokenRecTokenizer)
    assert loaded.model_card_data.metrics == {"hr@20": 0.31, "ndcg@20": 0.12}
    user = trained.data.user_ids[2]
    assert (
        loaded.recommend(TokenRecTokenizer.from_pretrained(download), users=[user], top_k=5).item_ids
        == model.recommend(tokenizer, users=[user], top_k=5).item_ids
    )


def test_repo_id_offline_raises(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE is set"):
        TokenRecForRetrieval.from_pretrained("someone/tokenrec-not-cached", cache_dir=tmp_path)
    with pytest.raises(HubUnreachableError, match="pass its local folder"):
        TokenRecTokenizer.from_pretrained("someone/tokenrec-not-cached", cache_dir=tmp_path)
    with pytest.raises(HubUnreachableError, match="HF_HUB_OFFLINE is set"):
        CollaborativeModel.from_pretrained("someone/tokenrec-not-cached", cache_dir=tmp_path)
