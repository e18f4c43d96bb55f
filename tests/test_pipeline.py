"""End-to-end pipeline and `tokenrec` command on a tiny synthetic dataset and a tiny random T5."""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
from pathlib import Path

import pytest
from transformers import T5Config

from tokenrec_hf.cli import RecommendArguments, main, recommend_from_folder
from tokenrec_hf.pipeline import (
    STAGE_ARGUMENTS,
    STAGES,
    PipelineArguments,
    PipelineState,
    run_pipeline,
    validate_arguments,
)
from tokenrec_hf.utils import HubUnreachableError


def _write_sequences(folder, num_users=40, num_items=30, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for user in range(1, num_users + 1):
        # Two taste groups, so the collaborative signal is learnable.
        pool = list(range(1, num_items // 2 + 1)) if user % 2 else list(range(num_items // 2 + 1, num_items + 1))
        items = rng.sample(pool, rng.randint(5, 10))
        lines.append(" ".join(str(value) for value in [user, *items]))
    (folder / "user_sequence.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture()
def tiny_backbone_dir(tmp_path, tiny_t5_tokenizer_dir):
    folder = tmp_path / "tiny-t5"
    shutil.copytree(tiny_t5_tokenizer_dir, folder)
    T5Config(
        vocab_size=400, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4
    ).save_pretrained(folder)
    return folder


def _arguments(tmp_path, backbone, **overrides):
    values = dict(
        dataset="lastfm",
        data_dir=str(_write_sequences(tmp_path / "LastFM")),
        output_dir=str(tmp_path / "run"),
        backbone=str(backbone),
        collaborative_epochs=2,
        embedding_dim=16,
        num_codebooks=2,
        codebook_size=4,
        mq_epochs=2,
        num_train_epochs=1,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        unseen_user_fraction=0.1,
        disable_tqdm=True,
    )
    values.update(overrides)
    return PipelineArguments(**values)


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(ValueError, match=r"dataset='lastfmm' is not supported; choose one of \['lastfm'"):
        PipelineArguments(dataset="lastfmm")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"collaborative_batch_size": 0}, "collaborative_batch_size=0 must be a positive integer"),
        ({"collaborative_learning_rate": -1.0}, "collaborative_learning_rate=-1.0 must be a finite positive number"),
        ({"learning_rate": 0.0}, "learning_rate=0.0 must be a finite positive number"),
        ({"mq_learning_rate": 0.0}, "mq_learning_rate=0.0 must be a finite positive number"),
        ({"mq_learning_rate": float("inf")}, "mq_learning_rate=inf must be a finite positive number"),
        ({"collaborative_learning_rate": float("nan")}, "collaborative_learning_rate=nan must be a finite"),
        ({"mq_epochs": 0}, "mq_epochs=0 must be a positive integer"),
        ({"mq_collapse_retries": -1}, "mq_collapse_retries=-1 must be 0 or a positive integer"),
        ({"num_train_epochs": 0}, "num_train_epochs=0 must be a finite positive number"),
        ({"num_train_epochs": float("nan")}, "num_train_epochs=nan must be a finite positive number"),
        ({"max_train_steps": 0}, "max_train_steps=0 must be a positive number of steps, or -1"),
        ({"per_device_train_batch_size": 0}, "per_device_train_batch_size=0 must be a positive integer"),
        ({"num_layers": -1}, "num_layers=-1 must be 0 or a positive integer"),
        ({"num_codebooks": 1000}, r"num_codebooks \(K\) must be an integer in \[1, 64\]"),
        ({"codebook_size": 1}, "codebook_size=1 must be at least 2"),
        ({"margin": -1.5}, r"margin=-1.5 must be in \[-1, 1\]"),
        ({"example_sampling": "foo"}, "example_sampling='foo' is not supported"),
    ],
)
def test_invalid_training_values(overrides, message):
    with pytest.raises(ValueError, match=message):
        PipelineArguments(**overrides)


def test_choices_are_case_insensitive():
    args = PipelineArguments(dataset="LastFM", quantizer="KWay", query_pooling="Encoder_Mean", preset="CPU-Small")
    assert args.dataset == "lastfm"
    assert args.quantizer == "kway"
    assert args.query_pooling == "encoder_mean"
    assert args.preset == "cpu-small"


def test_invalid_id_embedding_init():
    with pytest.raises(ValueError, match="id_embedding_init='zeros'"):
        PipelineArguments(id_embedding_init="zeros")


def test_invalid_thread_count():
    with pytest.raises(ValueError, match="num_threads=0 must be a positive integer"):
        PipelineArguments(num_threads=0)


def test_missing_data_dir_fails_before_training(tmp_path, tiny_backbone_dir):
    args = _arguments(tmp_path, tiny_backbone_dir, data_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="--data_dir .*nowhere does not exist"):
        validate_arguments(args)
    assert not (tmp_path / "run").exists()


def test_pretrained_backbone_without_weights(tmp_path, tiny_backbone_dir):
    args = _arguments(tmp_path, tiny_backbone_dir, backbone_init="pretrained")
    with pytest.raises(FileNotFoundError, match="--backbone_init random"):
        validate_arguments(args)


def test_offline_hub_backbone_explains_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = _arguments(tmp_path, "someone/not-a-cached-t5")
    with pytest.raises(HubUnreachableError, match="pass --backbone /path/to/t5-small"):
        validate_arguments(args)


def test_non_t5_backbone_rejected(tmp_path, tiny_backbone_dir):
    config = json.loads((tiny_backbone_dir / "config.json").read_text())
    config["model_type"] = "bert"
    (tiny_backbone_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="model_type='bert'; TokenRec needs a T5 backbone"):
        validate_arguments(_arguments(tmp_path, tiny_backbone_dir))


def test_default_output_dir_names_dataset():
    assert PipelineArguments(dataset="beauty").output_dir == "outputs/tokenrec-beauty"


def test_random_backbone_plan(tmp_path, tiny_backbone_dir):
    plan = validate_arguments(_arguments(tmp_path, tiny_backbone_dir))
    assert not plan.pretrained
    assert plan.description.startswith("random initialization of a T5 with 2+2 layers and d_model 32")
    assert "preset" not in plan.description
    assert plan.config.d_model == 32


def test_cpu_small_preset_shrinks_backbone(tmp_path, tiny_backbone_dir):
    plan = validate_arguments(_arguments(tmp_path, tiny_backbone_dir, preset="cpu-small"))
    assert plan.config.num_layers == 2
    assert plan.config.d_model == 256
    assert "2+2 layers and d_model 256" in plan.description
    assert "shrunk by the cpu-small preset" in plan.description


def test_pipeline_end_to_end_and_resume(tmp_path, tiny_backbone_dir, capsys):
    args = _arguments(tmp_path, tiny_backbone_dir, stop_after="tokenizers")
    run_pipeline(args)
    state = PipelineState(tmp_path / "run")
    assert [stage for stage in STAGES if state.finished(stage)] == ["data", "collaborative", "tokenizers"]
    assert not (tmp_path / "run" / "model.safetensors").exists()

    # A second run skips the finished stages and continues with the LLM and the test evaluation.
    args = _arguments(tmp_path, tiny_backbone_dir, id_embedding_init="codebooks")
    metrics = run_pipeline(args)
    state = PipelineState(tmp_path / "run")
    assert all(state.finished(stage) for stage in STAGES)

    output = tmp_path / "run"
    for name in ("config.json", "model.safetensors", "tokenizer.json", "metrics.json", "results.md", "README.md"):
        assert (output / name).is_file(), name
    for plot in ("user_codebook_usage.png", "item_codebook_usage.png", "collaborative_training_curve.png"):
        assert (output / "plots" / plot).is_file(), plot

    assert metrics == json.loads((output / "metrics.json").read_text())
    assert set(metrics["test"]) == {
        "tokenrec_history",
        "tokenrec_user_only",
        "tokenrec_unseen",
        "lightgcn",
        "tokenrec_history_unseen_users",
        "lightgcn_unseen_users",
    }
    for row in metrics["test"].values():
        assert set(row) == {"hr@10", "hr@20", "hr@30", "ndcg@10", "ndcg@20", "ndcg@30"}
        assert all(0.0 <= value <= 1.0 for value in row.values())
    assert metrics["num_unseen_users"] == 4
    assert "random initialization" in metrics["backbone"]
    assert str(tmp_path) not in metrics["backbone"]
    assert (output / "pipeline_arguments.json").is_file()

    card = (output / "README.md").read_text()
    assert "unseen users" in card
    assert "- id_embedding_init: codebooks" in card


def test_stage_with_missing_files_runs_again(tmp_path, tiny_backbone_dir):
    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="data"))
    (tmp_path / "run" / "data" / "interaction_data.json").unlink()
    assert not PipelineState(tmp_path / "run").finished("data")

    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="data"))
    assert (tmp_path / "run" / "data" / "interaction_data.json").is_file()


def test_rerun_invalidates_later_stages(tmp_path, tiny_backbone_dir):
    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="tokenizers"))
    stale = tmp_path / "run" / "llm_checkpoints" / "checkpoint-7"
    stale.mkdir(parents=True)
    (tmp_path / "run" / "collaborative" / "model.safetensors").unlink()

    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="collaborative"))

    state = PipelineState(tmp_path / "run")
    assert [stage for stage in STAGES if state.finished(stage)] == ["data", "collaborative"]
    assert "tokenizers" not in state.values["stages"]
    assert not stale.parent.exists()


def test_collapsed_tokenizer_retrained(tmp_path, tiny_backbone_dir, caplog):
    # A learning rate of 30 kills the encoders' ReLUs in the first steps, so the first tokenizers collapse.
    args = _arguments(
        tmp_path, tiny_backbone_dir, stop_after="tokenizers", codebook_size=16, mq_learning_rate=30.0, mq_epochs=3
    )
    with caplog.at_level("WARNING"):
        run_pipeline(args)
    assert "The user MQ-Tokenizer collapsed (usage codebook 0:" in caplog.text
    assert "training it again from scratch with learning rate 6 (1 of 2 retries)" in caplog.text
    assert "of the items share their whole code with another item." in caplog.text
    assert "of the trained MQ-Tokenizer uses" not in caplog.text

    metrics = json.loads((tmp_path / "run" / "codebook_metrics.json").read_text())
    state = PipelineState(tmp_path / "run").values["stages"]["tokenizers"]
    for side in ("user", "item"):
        tried = metrics[side]["collapsed_learning_rates"]
        assert tried[:1] == [30.0], side
        assert metrics[side]["learning_rate"] == pytest.approx(30.0 / 5 ** len(tried))
        assert state[f"{side}_mq_learning_rate"] == metrics[side]["learning_rate"]

    # Without retries the first, collapsed result is kept, with a warning.
    caplog.clear()
    no_retry = _arguments(
        tmp_path,
        tiny_backbone_dir,
        output_dir=str(tmp_path / "no-retry"),
        stop_after="tokenizers",
        codebook_size=16,
        mq_learning_rate=30.0,
        mq_epochs=3,
        mq_collapse_retries=0,
    )
    with caplog.at_level("WARNING"):
        run_pipeline(no_retry)
    metrics = json.loads((tmp_path / "no-retry" / "codebook_metrics.json").read_text())
    assert metrics["user"]["collapsed_learning_rates"] == []
    assert metrics["user"]["learning_rate"] == 30.0
    assert metrics["user"]["min_usage"] < 0.1
    assert "has collapsed codebooks (usage codebook 0:" in caplog.text
    assert "after 0 retries (--mq_collapse_retries)" in caplog.text


def test_disable_tqdm_hides_loading_bars(tmp_path, tiny_backbone_dir, capsys):
    from transformers.utils import logging as transformers_logging

    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="llm", num_train_epochs=1))

    assert "Loading weights" not in capsys.readouterr().err
    assert transformers_logging.is_progress_bar_enabled()


def test_recommend_unfinished_folder(tmp_path, tiny_backbone_dir, capsys):
    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="collaborative"))

    code = main(["recommend", "--model_dir", str(tmp_path / "run"), "--user", "3"])

    assert code == 1
    error = capsys.readouterr().err
    assert "stages ['tokenizers', 'llm'] have not finished" in error
    assert f"tokenrec run --backbone {tiny_backbone_dir}" in error
    assert f"--output_dir {tmp_path / 'run'}" in error
    assert "--stop_after" not in error


def test_help_lists_options(capsys):
    for command in ("run", "recommend"):
        with pytest.raises(SystemExit) as raised:
            main([command, "--help"])
        assert raised.value.code == 0
    assert "--mq_collapse_retries" in capsys.readouterr().out


def test_unknown_command_is_named(capsys):
    assert main(["runn"]) == 2
    assert "unknown command 'runn'; use 'run' or 'recommend'" in capsys.readouterr().err


def test_overwrite_rejects_non_run_folder(tmp_path, tiny_backbone_dir):
    notes = tmp_path / "thesis" / "notes.txt"
    notes.parent.mkdir()
    notes.write_text("keep me")

    with pytest.raises(ValueError, match="only deletes `tokenrec run` output folders"):
        run_pipeline(_arguments(tmp_path, tiny_backbone_dir, output_dir=str(notes.parent), overwrite_output_dir=True))
    assert notes.read_text() == "keep me"


def test_overwrite_rejects_data_inside(tmp_path, tiny_backbone_dir):
    args = _arguments(tmp_path, tiny_backbone_dir, output_dir=str(tmp_path), overwrite_output_dir=True)
    (tmp_path / "pipeline_state.json").write_text('{"stages": {}}')

    with pytest.raises(ValueError, match="which contains --data_dir"):
        run_pipeline(args)
    assert (Path(args.data_dir) / "user_sequence.txt").is_file()


def test_overwrite_replaces_a_run_folder(tmp_path, tiny_backbone_dir):
    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="data"))
    stale = tmp_path / "run" / "stale.txt"
    stale.write_text("old")

    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="data", overwrite_output_dir=True))

    assert not stale.exists()
    assert PipelineState(tmp_path / "run").finished("data")


def test_overwrite_rejects_backbone_inside(tmp_path, tiny_backbone_dir):
    inside = tmp_path / "run" / "t5"
    shutil.copytree(tiny_backbone_dir, inside)
    (tmp_path / "run" / "pipeline_state.json").write_text('{"stages": {}}')

    with pytest.raises(ValueError, match="which contains --backbone"):
        run_pipeline(_arguments(tmp_path, inside, overwrite_output_dir=True))
    assert (inside / "config.json").is_file()


def test_overwrite_rejects_env_data_inside(tmp_path, tiny_backbone_dir, monkeypatch):
    run_dir = tmp_path / "run"
    _write_sequences(run_dir / "LastFM")
    (run_dir / "pipeline_state.json").write_text('{"stages": {}}')
    monkeypatch.setenv("TOKENREC_DATA_DIR", str(run_dir))

    with pytest.raises(ValueError, match="which contains \\$TOKENREC_DATA_DIR"):
        run_pipeline(_arguments(tmp_path, tiny_backbone_dir, data_dir=None, overwrite_output_dir=True))
    assert (run_dir / "LastFM" / "user_sequence.txt").is_file()


def test_overwrite_rejects_symbolic_link(tmp_path, tiny_backbone_dir):
    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="data"))
    (tmp_path / "link").symlink_to(tmp_path / "run")

    with pytest.raises(ValueError, match="is a symbolic link, which --overwrite_output_dir does not follow"):
        run_pipeline(
            _arguments(tmp_path, tiny_backbone_dir, output_dir=str(tmp_path / "link"), overwrite_output_dir=True)
        )


def test_output_dir_empty_and_home():
    with pytest.raises(ValueError, match="--output_dir is empty"):
        PipelineArguments(output_dir="")
    assert PipelineArguments(output_dir="~/runs/x").output_dir == str(Path.home() / "runs" / "x")


def test_seed_out_of_range_rejected():
    with pytest.raises(ValueError, match=r"seed=-1 must be in \[0, 2\*\*32\)"):
        PipelineArguments(seed=-1)


def test_resume_keeps_started_arguments(tmp_path, tiny_backbone_dir):
    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="tokenizers"))
    state = PipelineState(tmp_path / "run")
    state.mark_started("llm", _arguments(tmp_path, tiny_backbone_dir))
    (tmp_path / "run" / "llm_checkpoints" / "checkpoint-2").mkdir(parents=True)

    with pytest.raises(ValueError, match="started stage 'llm' with learning_rate=0.001.*delete"):
        run_pipeline(_arguments(tmp_path, tiny_backbone_dir, learning_rate=0.05))


def test_incomplete_checkpoint_deleted(tmp_path, tiny_backbone_dir, caplog):
    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="tokenizers"))
    cut_off = tmp_path / "run" / "llm_checkpoints" / "checkpoint-2"
    cut_off.mkdir(parents=True)
    (cut_off / "model.safetensors").write_bytes(b"")

    with caplog.at_level("WARNING"):
        run_pipeline(_arguments(tmp_path, tiny_backbone_dir))

    assert "has no trainer_state.json, so its save was interrupted" in caplog.text
    assert PipelineState(tmp_path / "run").finished("test")


def test_changed_data_file_is_rejected(tmp_path, tiny_backbone_dir):
    args = _arguments(tmp_path, tiny_backbone_dir, stop_after="data")
    run_pipeline(args)
    _write_sequences(Path(args.data_dir), num_users=50, seed=1)

    with pytest.raises(ValueError, match="user_sequence.txt changed after stage 'data' finished"):
        run_pipeline(args)


def test_respelled_data_dir_accepted(tmp_path, tiny_backbone_dir):
    args = _arguments(tmp_path, tiny_backbone_dir, stop_after="data")
    run_pipeline(args)

    respelled = _arguments(tmp_path, tiny_backbone_dir, stop_after="data", data_dir=args.data_dir + "/")
    run_pipeline(respelled)
    assert PipelineState(tmp_path / "run").finished("data")


def test_non_t5_base_tokenizer_rejected(tmp_path, tiny_backbone_dir):
    from transformers import BertTokenizerFast

    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b"]))
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)

    with pytest.raises(ValueError, match="contains a BertTokenizer.*needs a T5 tokenizer"):
        validate_arguments(_arguments(tmp_path, tiny_backbone_dir, base_tokenizer=str(folder)))


def test_empty_base_tokenizer_rejected(tmp_path, tiny_backbone_dir):
    (tmp_path / "empty").mkdir()

    with pytest.raises(ValueError, match="Could not load a T5 tokenizer from"):
        validate_arguments(_arguments(tmp_path, tiny_backbone_dir, base_tokenizer=str(tmp_path / "empty")))


def test_data_dir_that_is_a_file(tmp_path, tiny_backbone_dir):
    args = _arguments(tmp_path, tiny_backbone_dir)
    sequence_file = f"{args.data_dir}/user_sequence.txt"
    with pytest.raises(NotADirectoryError, match="is a file. Pass the folder that contains it"):
        validate_arguments(_arguments(tmp_path, tiny_backbone_dir, data_dir=sequence_file))


def test_changed_argument_for_finished_stage(tmp_path, tiny_backbone_dir):
    run_pipeline(_arguments(tmp_path, tiny_backbone_dir, stop_after="data"))
    with pytest.raises(ValueError, match="finished stage 'data' with max_sequence_length=100"):
        run_pipeline(_arguments(tmp_path, tiny_backbone_dir, max_sequence_length=50))


def test_older_state_uses_argument_defaults(tmp_path):
    # A stage recorded before `id_embedding_init` existed ran with its default, "random".
    output = tmp_path / "run"
    output.mkdir()
    saved = {
        name: getattr(PipelineArguments(), name) for name in STAGE_ARGUMENTS["llm"] if name != "id_embedding_init"
    }
    (output / "pipeline_state.json").write_text(json.dumps({"stages": {"llm": {"arguments": saved}}}))

    state = PipelineState(output)
    state.check_arguments("llm", PipelineArguments())
    with pytest.raises(ValueError, match="with id_embedding_init='random', but this run has"):
        state.check_arguments("llm", PipelineArguments(id_embedding_init="codebooks"))
    with pytest.raises(ValueError, match="with max_train_steps=-1, but this run has max_train_steps=3"):
        state.check_arguments("llm", PipelineArguments(max_train_steps=3))


@pytest.fixture(scope="module")
def trained_folder(tmp_path_factory, tiny_t5_tokenizer_dir):
    tmp_path = tmp_path_factory.mktemp("pipeline")
    backbone = tmp_path / "tiny-t5"
    shutil.copytree(tiny_t5_tokenizer_dir, backbone)
    T5Config(vocab_size=400, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4).save_pretrained(backbone)
    run_pipeline(_arguments(tmp_path, backbone, unseen_user_fraction=0.0))
    return tmp_path / "run"


def test_model_card_without_unseen_users(trained_folder):
    card = (trained_folder / "README.md").read_text()
    assert "No users were held out of training" in card
    assert "- id_embedding_init: random" in card


def test_cosine_bound_matches_run_metrics(trained_folder):
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "cosine_bound.py"
    spec = importlib.util.spec_from_file_location("cosine_bound", script)
    cosine_bound = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cosine_bound)

    results = cosine_bound.main(["--run_dir", str(trained_folder)])
    metrics = json.loads((trained_folder / "metrics.json").read_text())
    assert results["dot_user"] == pytest.approx(metrics["test"]["lightgcn"], abs=1e-9)
    for name in ("cosine_user", "cosine_history_mean"):
        assert all(0.0 <= value <= 1.0 for value in results[name].values())


def test_recommend_known_and_new_user(trained_folder):
    outputs = recommend_from_folder(RecommendArguments(model_dir=str(trained_folder), user=["3"], history=["1", "2"]))
    assert [output["user"] for output in outputs] == ["3", "new user"]

    data = json.loads((trained_folder / "data" / "interaction_data.json").read_text())
    catalog = set(data["item_ids"])
    for output in outputs:
        assert len(output["items"]) == 10
        assert set(output["items"]) <= catalog
        assert output["scores"] == sorted(output["scores"], reverse=True)
    assert not {"1", "2"} & set(outputs[1]["items"])


def test_recommend_unknown_user_suggests_history(trained_folder, capsys):
    code = main(["recommend", "--model_dir", str(trained_folder), "--user", "no-such-user"])
    assert code == 1
    assert "pass their interaction history instead: --history" in capsys.readouterr().err


def test_recommend_unknown_history_item(trained_folder, capsys):
    code = main(["recommend", "--model_dir", str(trained_folder), "--history", "999999"])
    assert code == 1
    error = capsys.readouterr().err
    assert "tokenrec recommend: error:" in error
    assert "999999" in error


def test_recommend_lists_unknown_items(trained_folder, capsys):
    code = main(["recommend", "--model_dir", str(trained_folder), "--history", "1", "999998", "999999"])
    assert code == 1
    error = capsys.readouterr().err
    assert "--history has 2 item ids that are not in this model's catalog" in error
    assert "['999998', '999999']" in error


def test_recommend_prompt_kind_any_case(trained_folder, capsys):
    assert main(["recommend", "--model_dir", str(trained_folder), "--user", "3", "--prompt", "HISTORY"]) == 0
    assert "Top-10 for 3:" in capsys.readouterr().out


def test_recommend_model_dir_that_is_a_file(trained_folder, capsys):
    code = main(["recommend", "--model_dir", str(trained_folder / "config.json"), "--user", "3"])
    assert code == 1
    assert "config.json is a file; pass the output folder" in capsys.readouterr().err


def test_recommend_invalid_prompt_kind(trained_folder, capsys):
    code = main(["recommend", "--model_dir", str(trained_folder), "--user", "3", "--prompt", "foo"])
    assert code == 1
    assert "--prompt 'foo' is not supported" in capsys.readouterr().err


def test_recommend_corrupted_weights(trained_folder, tmp_path, capsys):
    folder = tmp_path / "corrupted"
    shutil.copytree(trained_folder, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])

    code = main(["recommend", "--model_dir", str(folder), "--user", "3"])
    assert code == 1
    assert f"The model in {folder} has a corrupted safetensors file" in capsys.readouterr().err
