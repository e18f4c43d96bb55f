"""One command from interactions to recommendations: every TokenRec stage on a named dataset, resumable.

The stages run in order and each writes its artifact into one output folder:

1. `data`: the leave-one-out split (`data/`).
2. `collaborative`: LightGCN or MF trained on the seen users' training interactions (`collaborative/`).
3. `tokenizers`: the user and item MQ-Tokenizers, then the `TokenRecTokenizer` (saved at the folder's root).
4. `llm`: the T5 backbone fine-tuned with the cosine-margin loss, selected on validation (saved at the root).
5. `test`: the test targets scored once, for TokenRec and for the collaborative model, into `metrics.json` and
   `results.md`.

A finished stage is recorded in `pipeline_state.json` and skipped when the command runs again. An interrupted
collaborative or LLM stage resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from transformers import T5Config
from transformers.utils import logging

from .data.download import sha256_of_file
from .data.named_datasets import DATA_DIR_ENV
from .data_collator import EXAMPLE_SAMPLING_MODES
from .utils import HubUnreachableError, atomic_write_json, atomic_write_text, load_json, resolve_pretrained_folder
from .version import __version__

logger = logging.get_logger(__name__)

STAGES = ("data", "collaborative", "tokenizers", "llm", "test")
KNOWN_DATASETS = ("lastfm", "ml1m", "beauty", "clothing")
PRESETS = ("t5-small", "cpu-small")
DEFAULT_BACKBONE = "google-t5/t5-small"
STATE_FILE = "pipeline_state.json"

# Files each finished stage leaves in the output folder; a skipped stage whose files are gone runs again.
STAGE_OUTPUTS = {
    "data": ("data/interaction_data.json",),
    "collaborative": ("collaborative/config.json", "collaborative/model.safetensors", "collaborative/id_maps.json"),
    "tokenizers": (
        "tokenizer.json",
        "tokenrec_tokenizer_config.json",
        "user_codes.safetensors",
        "item_codes.safetensors",
    ),
    "llm": ("config.json", "model.safetensors", "llm_training_summary.json"),
    "test": ("metrics.json", "results.md"),
}

# Arguments that may name a local folder; `data/x/` and `./data/x` name the same one.
PATH_ARGUMENTS = ("data_dir", "backbone", "base_tokenizer")

# Folders where a stage keeps checkpoints to resume from. When an earlier stage runs again, these belong to
# artifacts that no longer match, so they are deleted instead of resumed.
STAGE_WORK_DIRS = {
    "collaborative": ("collaborative_training",),
    "tokenizers": ("user_quantizer_training", "item_quantizer_training"),
    "llm": ("llm_checkpoints",),
}

# The arguments each stage depends on. Changing one of them for an existing output folder would mix artifacts of
# two configurations, so the pipeline rejects it instead of silently reusing the finished stage.
STAGE_ARGUMENTS = {
    "data": ("dataset", "data_dir", "max_sequence_length", "unseen_user_fraction"),
    "collaborative": (
        "collaborative_model",
        "embedding_dim",
        "num_layers",
        "collaborative_epochs",
        "collaborative_batch_size",
        "collaborative_learning_rate",
        "collaborative_patience",
        "seed",
    ),
    "tokenizers": (
        "num_codebooks",
        "codebook_size",
        "mask_ratio",
        "one_way",
        "quantizer",
        "mq_epochs",
        "mq_learning_rate",
        "mq_collapse_retries",
    ),
    "llm": (
        "backbone",
        "backbone_init",
        "preset",
        "base_tokenizer",
        "query_pooling",
        "margin",
        "num_negatives",
        "num_train_epochs",
        "learning_rate",
        "per_device_train_batch_size",
        "example_sampling",
        "id_embedding_init",
        "max_train_steps",
        "early_stopping_patience",
    ),
}


@dataclass
class PipelineArguments:
    """Arguments of the end-to-end TokenRec pipeline (`tokenrec run`)."""

    # Data
    dataset: str = field(default="lastfm", metadata={"help": f"Dataset name, one of {list(KNOWN_DATASETS)}."})
    data_dir: str | None = field(
        default=None,
        metadata={
            "help": "Local folder with the dataset files (or a parent with LastFM/, ML1M/, Beauty/). Defaults to "
            "$TOKENREC_DATA_DIR, then a verified download into the Hugging Face cache."
        },
    )
    output_dir: str | None = field(
        default=None, metadata={"help": "Folder for every artifact. Defaults to outputs/tokenrec-<dataset>."}
    )
    max_sequence_length: int = field(default=100, metadata={"help": "Most recent items kept per user."})
    unseen_user_fraction: float = field(
        default=0.0,
        metadata={"help": "Share of least active users held out of every training stage and evaluated apart."},
    )

    # Collaborative filtering
    collaborative_model: str = field(default="lightgcn", metadata={"help": "'lightgcn' or 'mf'."})
    embedding_dim: int = field(default=64, metadata={"help": "Width of the collaborative embeddings."})
    num_layers: int = field(default=3, metadata={"help": "LightGCN propagation layers."})
    collaborative_epochs: int = field(default=1000, metadata={"help": "Maximum collaborative training epochs."})
    collaborative_batch_size: int = field(
        default=2048, metadata={"help": "BPR triples per collaborative training step (8192 suits ML1M)."}
    )
    collaborative_learning_rate: float = field(
        default=5e-3, metadata={"help": "Adam learning rate of LightGCN or MF."}
    )
    collaborative_patience: int = field(
        default=10, metadata={"help": "Validation evaluations (every 5 epochs) without improvement before stopping."}
    )

    # MQ-Tokenizers
    num_codebooks: int = field(default=3, metadata={"help": "K, ID tokens per user or item."})
    codebook_size: int = field(default=256, metadata={"help": "L, codewords per codebook."})
    mask_ratio: float = field(default=0.2, metadata={"help": "rho, the masking probability of the MQ-Tokenizers."})
    one_way: bool = field(
        default=False, metadata={"help": "Ablation: one codebook of K*L codewords (one token per entity)."}
    )
    quantizer: str = field(default="kway", metadata={"help": "'kway' (MQ-Tokenizer) or 'residual' (RQ-VAE style)."})
    mq_epochs: int = field(default=400, metadata={"help": "Maximum MQ-Tokenizer training epochs."})
    mq_learning_rate: float = field(
        default=5e-3, metadata={"help": "AdamW learning rate of the MQ-Tokenizers; lower it if a codebook collapses."}
    )
    mq_collapse_retries: int = field(
        default=2,
        metadata={
            "help": "When a trained MQ-Tokenizer has a codebook that uses under 10%% of its codewords, train it again "
            "from scratch with a 5 times lower learning rate, at most this many times. 0 keeps the first result."
        },
    )

    # LLM
    backbone: str = field(
        default=DEFAULT_BACKBONE,
        metadata={
            "help": "T5 backbone: a Hub id or a local folder. A folder with config.json but no model.safetensors "
            "(such as a copy of t5-small's tokenizer and config) gives a randomly initialized backbone."
        },
    )
    backbone_init: str = field(
        default="auto",
        metadata={"help": "'pretrained', 'random', or 'auto' (pretrained when weights are available)."},
    )
    preset: str = field(
        default="t5-small",
        metadata={"help": "'t5-small' (the backbone's own shape) or 'cpu-small' (2+2 layers, d_model 256, random)."},
    )
    base_tokenizer: str | None = field(
        default=None, metadata={"help": "T5 tokenizer folder or Hub id. Defaults to --backbone."}
    )
    query_pooling: str = field(
        default="encoder_mean", metadata={"help": "Where z is read: 'encoder_mean' or 'decoder'."}
    )
    id_embedding_init: str = field(
        default="random",
        metadata={
            "help": "Start of the ID-token input embeddings: 'random' (the statistics of the text rows) or "
            "'codebooks' (the MQ-Tokenizers' codewords, projected to d_model)."
        },
    )
    margin: float = field(default=0.1, metadata={"help": "gamma, the margin of negative pairs."})
    num_negatives: int = field(default=1, metadata={"help": "Negatives per positive."})
    example_sampling: str | None = field(
        default=None, metadata={"help": "How training examples are drawn; defaults to the trainer's default."}
    )
    num_train_epochs: float = field(default=30, metadata={"help": "Maximum LLM training epochs."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate of the LLM stage."})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "LLM training batch size per device."})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "LLM evaluation batch size per device."})
    early_stopping_patience: int = field(
        default=5, metadata={"help": "Validation evaluations without improvement before the LLM stage stops."}
    )
    max_train_steps: int = field(
        default=-1, metadata={"help": "Stop the LLM stage after this many steps (-1: run all epochs)."}
    )

    # Run
    seed: int = field(default=42, metadata={"help": "Seed of every stage."})
    stop_after: str | None = field(
        default=None, metadata={"help": f"Stop after this stage, one of {list(STAGES)}; later runs continue."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Delete an existing output folder and start over."}
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide progress bars."})
    num_threads: int | None = field(
        default=None,
        metadata={
            "help": "torch intra-op threads. Unset keeps torch's default; 1 is much faster for the sparse "
            "collaborative stage when other jobs share the CPU."
        },
    )

    def __post_init__(self) -> None:
        # Choices are matched case-insensitively, so `--dataset LastFM` and `--quantizer KWay` both work.
        choices = {
            "dataset": KNOWN_DATASETS,
            "collaborative_model": ("lightgcn", "mf"),
            "backbone_init": ("auto", "pretrained", "random"),
            "preset": PRESETS,
            "query_pooling": ("decoder", "encoder_mean"),
            "quantizer": ("kway", "residual"),
            "id_embedding_init": ("random", "codebooks"),
            "stop_after": STAGES,
            "example_sampling": EXAMPLE_SAMPLING_MODES,
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value.lower())
                _check_choice(name, getattr(self, name), allowed)
        if self.output_dir is None:
            self.output_dir = f"outputs/tokenrec-{self.dataset}"
        if not str(self.output_dir).strip():
            raise ValueError("--output_dir is empty; pass the folder the run should write to.")
        self.output_dir = str(Path(self.output_dir).expanduser())
        # Local folders are recorded as absolute paths, so that a later run from another folder finds them again.
        for name in PATH_ARGUMENTS:
            value = getattr(self, name)
            if value is not None and Path(value).expanduser().exists():
                setattr(self, name, str(Path(value).expanduser().resolve()))
        if not 0 <= self.seed < 2**32:
            raise ValueError(f"seed={self.seed} must be in [0, 2**32).")
        if not 0.0 <= self.unseen_user_fraction < 0.5:
            raise ValueError(f"unseen_user_fraction={self.unseen_user_fraction} must be in [0, 0.5).")
        positive = ("num_codebooks", "codebook_size", "embedding_dim", "max_sequence_length", "num_negatives")
        positive += ("collaborative_epochs", "collaborative_batch_size", "collaborative_patience", "mq_epochs")
        positive += ("early_stopping_patience", "per_device_train_batch_size", "per_device_eval_batch_size")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be a positive integer.")
        if self.mq_collapse_retries < 0:
            raise ValueError(f"mq_collapse_retries={self.mq_collapse_retries} must be 0 or a positive integer.")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads={self.num_threads} must be a positive integer, or unset.")
        for name in ("learning_rate", "collaborative_learning_rate", "mq_learning_rate"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value} must be a finite positive number.")
        if not (math.isfinite(self.num_train_epochs) and self.num_train_epochs > 0):
            raise ValueError(f"num_train_epochs={self.num_train_epochs} must be a finite positive number.")
        if self.max_train_steps == 0 or self.max_train_steps < -1:
            raise ValueError(
                f"max_train_steps={self.max_train_steps} must be a positive number of steps, or -1 to run every epoch."
            )
        if self.num_layers < 0:
            raise ValueError(
                f"num_layers={self.num_layers} must be 0 or a positive integer (3 is usual for LightGCN)."
            )
        if self.codebook_size < 2:
            raise ValueError(f"codebook_size={self.codebook_size} must be at least 2.")
        if not (math.isfinite(self.margin) and -1.0 <= self.margin <= 1.0):
            raise ValueError(f"margin={self.margin} must be in [-1, 1], the range of a cosine.")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio={self.mask_ratio} must be in [0, 1).")
        if self.preset == "cpu-small" and self.backbone_init == "pretrained":
            raise ValueError(
                "preset='cpu-small' shrinks the backbone, so it always starts from random weights; "
                "use --preset t5-small with --backbone_init pretrained."
            )
        # The MQ-Tokenizer configuration has its own limits (such as K <= 64); meet them before any stage trains.
        from .quantization import MQTokenizerConfig

        MQTokenizerConfig(
            input_dim=self.embedding_dim,
            num_codebooks=self.num_codebooks,
            codebook_size=self.codebook_size,
            mask_ratio=self.mask_ratio,
            quantizer=self.quantizer,
        )


# Field defaults, for folders whose recorded arguments predate a field.
ARGUMENT_DEFAULTS = {item.name: item.default for item in fields(PipelineArguments)}


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {list(choices)}.")


@dataclass
class BackbonePlan:
    """Plan for the T5 backbone: pretrained weights, or a config with random weights, and the tokenizer source."""

    source: str
    pretrained: bool
    config: T5Config | None
    tokenizer_source: str
    preset: str = "t5-small"

    @property
    def description(self) -> str:
        # Only a local folder's name is recorded, so that metrics files and model cards pushed to the Hub do not
        # reveal paths on the training machine.
        source = self.source
        if Path(source).expanduser().is_dir():
            source = f"local folder '{Path(source).name}'"
        if self.pretrained:
            return f"pretrained weights from {source}"
        shape = ""
        if self.config is not None:
            shape = (
                f" of a T5 with {self.config.num_layers}+{self.config.num_decoder_layers} layers and d_model "
                f"{self.config.d_model}"
            )
        if self.preset != "t5-small":
            source = f"{source}, shrunk by the {self.preset} preset"
        return f"random initialization{shape} (config from {source}; no pretrained weights)"


def plan_backbone(args: PipelineArguments) -> BackbonePlan:
    """Decide, before any training, whether the backbone is pretrained and where its tokenizer comes from.

    Raises:
        FileNotFoundError: A local backbone folder has no `config.json`, or pretrained weights were requested from a
            folder without `model.safetensors`.
        HubUnreachableError: The backbone is a Hub id that cannot be downloaded, with a hint about local folders.
    """
    tokenizer_source = args.base_tokenizer or args.backbone
    local = Path(args.backbone).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(
                f"Backbone folder {local} has no config.json; pass a T5 folder (config.json, and model.safetensors "
                "for pretrained weights)."
            )
        has_weights = (local / "model.safetensors").is_file()
        if args.backbone_init == "pretrained" and not has_weights:
            raise FileNotFoundError(
                f"--backbone_init pretrained needs {local / 'model.safetensors'}, which does not exist. "
                "Use --backbone_init random (or auto) to start from random weights with this config."
            )
        _check_t5_config(local / "config.json")
        pretrained = has_weights and args.backbone_init != "random" and args.preset == "t5-small"
        config = None if pretrained else T5Config.from_pretrained(local)
        return BackbonePlan(
            str(local), pretrained, _apply_preset(config, args.preset), tokenizer_source, preset=args.preset
        )

    try:
        folder = resolve_pretrained_folder(
            args.backbone, ["config.json"], artifact="T5 backbone", allow_patterns=["*.json", "*.model"]
        )
    except HubUnreachableError as error:
        raise HubUnreachableError(
            f"{error} Without the Hub, pass --backbone /path/to/t5-small (a folder with config.json and the "
            "tokenizer files) to start from random weights with the real t5-small vocabulary."
        ) from error
    _check_t5_config(folder / "config.json")
    pretrained = args.backbone_init != "random" and args.preset == "t5-small"
    config = None if pretrained else T5Config.from_pretrained(folder)
    return BackbonePlan(
        args.backbone, pretrained, _apply_preset(config, args.preset), tokenizer_source, preset=args.preset
    )


def _check_t5_config(path: Path) -> None:
    model_type = load_json(path, what="backbone config").get("model_type")
    if model_type != "t5":
        raise ValueError(
            f"{path} has model_type={model_type!r}; TokenRec needs a T5 backbone (model_type 't5'), such as "
            "google-t5/t5-small or a folder with its config.json."
        )


def _apply_preset(config: T5Config | None, preset: str) -> T5Config | None:
    if config is None or preset == "t5-small":
        return config
    # A shape that trains several times faster than t5-small on a CPU, for quick end-to-end runs.
    values = config.to_dict()
    values.update(d_model=256, d_ff=1024, d_kv=32, num_heads=8, num_layers=2, num_decoder_layers=2)
    return T5Config.from_dict(values)


class PipelineState:
    """The finished stages of one output folder, with the arguments each ran with."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / STATE_FILE
        self.values: dict[str, Any] = {"tokenrec_hf_version": __version__, "stages": {}}
        if self.path.is_file():
            self.values = load_json(self.path, what="pipeline state")

    def finished(self, stage: str, log_missing: bool = True) -> bool:
        """Return whether `stage` finished and its files are still in the output folder."""
        if stage not in self.values["stages"]:
            return False
        missing = [name for name in STAGE_OUTPUTS.get(stage, ()) if not (self.path.parent / name).is_file()]
        if missing and log_missing:
            logger.warning(f"Stage {stage!r} finished earlier but {missing} are missing, so it runs again.")
        return not missing

    def check_arguments(self, stage: str, args: PipelineArguments) -> None:
        """Raise when `args` differ from the arguments `stage` finished with, or its data file changed since.

        An unfinished stage is checked too when it left checkpoints, because the run would resume them.
        """
        record = self.values["stages"].get(stage)
        fix = "Use another --output_dir, or --overwrite_output_dir to start over."
        verb = "finished"
        if record is None:
            checkpoints = [
                self.path.parent / folder
                for folder in STAGE_WORK_DIRS.get(stage, ())
                if (self.path.parent / folder).is_dir() and any((self.path.parent / folder).iterdir())
            ]
            record = self.values.get("started", {}).get(stage) if checkpoints else None
            fix = (
                f"Pass the arguments it started with to resume it, or delete {[str(path) for path in checkpoints]} "
                "to restart this stage with the new ones."
            )
            verb = "started"
        if record is None:
            return
        for name in STAGE_ARGUMENTS.get(stage, ()):
            # A folder written before an argument existed ran with that argument's default.
            saved = record["arguments"].get(name, ARGUMENT_DEFAULTS.get(name))
            current = getattr(args, name)
            if not _same_argument(name, saved, current):
                raise ValueError(
                    f"{self.path.parent} {verb} stage {stage!r} with {name}={saved!r}, but this run has "
                    f"{name}={current!r}. {fix}"
                )
        source, digest = record.get("source"), record.get("source_sha256")
        if source and digest and Path(source).is_file() and sha256_of_file(source) != digest:
            raise ValueError(
                f"{source} changed after stage {stage!r} finished in {self.path.parent}, so the saved split no longer "
                "matches it. Use another --output_dir, or --overwrite_output_dir to split the new file."
            )

    def forget_later_stages(self, stage: str) -> None:
        """Drop every stage after `stage`, with its checkpoints, because `stage` is about to run again."""
        later = STAGES[STAGES.index(stage) + 1 :]
        output_dir = self.path.parent
        dropped = [name for name in later if name in self.values["stages"]]
        stale = [output_dir / folder for name in later for folder in STAGE_WORK_DIRS.get(name, ())]
        stale = [path for path in stale if path.exists()]
        if not dropped and not stale:
            return
        logger.warning(
            f"Stage {stage!r} runs again, so the later stages {dropped or later} will run again too. Deleting "
            f"their stale checkpoints {[path.name for path in stale]}."
        )
        for name in dropped:
            del self.values["stages"][name]
        for name in later:
            self.values.get("started", {}).pop(name, None)
        atomic_write_json(self.path, self.values)
        for path in stale:
            shutil.rmtree(path)

    def mark_started(self, stage: str, args: PipelineArguments) -> None:
        """Record the arguments a stage starts with, so that resuming its checkpoints with others is rejected."""
        arguments = {name: getattr(args, name) for name in STAGE_ARGUMENTS.get(stage, ())}
        self.values.setdefault("started", {})[stage] = {"arguments": arguments, "started_at": time.time()}
        atomic_write_json(self.path, self.values)

    def mark_finished(self, stage: str, args: PipelineArguments, **facts: Any) -> None:
        arguments = {name: getattr(args, name) for name in STAGE_ARGUMENTS.get(stage, ())}
        self.values["stages"][stage] = {"arguments": arguments, "finished_at": time.time(), **facts}
        self.values.get("started", {}).pop(stage, None)
        atomic_write_json(self.path, self.values)


def _same_argument(name: str, saved: Any, current: Any) -> bool:
    """Compare a recorded argument with the current one, treating two spellings of one local folder as equal."""
    if saved == current:
        return True
    if name not in PATH_ARGUMENTS or saved is None or current is None:
        return False
    current_path = Path(current).expanduser()
    return current_path.exists() and current_path.resolve() == Path(saved).expanduser().resolve()


def validate_arguments(args: PipelineArguments) -> BackbonePlan:
    """Check paths, names and the backbone before any training, so mistakes fail in the first second.

    The dataset itself is read by the first stage, which takes about a second, so a bad file fails just as early.
    """
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise NotADirectoryError(f"--output_dir {output_dir} is a file; pass a folder.")
    if args.data_dir is not None and Path(args.data_dir).expanduser().is_file():
        raise NotADirectoryError(
            f"--data_dir {args.data_dir} is a file. Pass the folder that contains it "
            f"({Path(args.data_dir).expanduser().parent})."
        )
    if args.data_dir is not None and not Path(args.data_dir).expanduser().is_dir():
        raise FileNotFoundError(
            f"--data_dir {args.data_dir} does not exist. Pass the folder that contains the {args.dataset} files, "
            "or leave it unset to use $TOKENREC_DATA_DIR or a download."
        )
    if args.overwrite_output_dir and output_dir.is_dir():
        _check_overwrite(output_dir, args)
    plan = plan_backbone(args)
    _check_base_tokenizer(plan.tokenizer_source)
    return plan


def _check_overwrite(output_dir: Path, args: PipelineArguments) -> None:
    """Raise unless `output_dir` is a folder that `--overwrite_output_dir` may delete: empty, or a run folder."""
    if output_dir.is_symlink():
        raise ValueError(
            f"--output_dir {output_dir} is a symbolic link, which --overwrite_output_dir does not follow. Pass the "
            f"folder it points to ({output_dir.resolve()}), or delete the link yourself."
        )
    folder = output_dir.expanduser().resolve()
    if Path.cwd().resolve().is_relative_to(folder):
        raise ValueError(
            f"--overwrite_output_dir would delete {folder}, which contains the current working directory. "
            "Pass a subfolder as --output_dir."
        )
    inputs = {
        "--data_dir": args.data_dir,
        f"${DATA_DIR_ENV}": os.environ.get(DATA_DIR_ENV) if args.data_dir is None else None,
        "--backbone": args.backbone,
        "--base_tokenizer": args.base_tokenizer,
    }
    for flag, value in inputs.items():
        if value and Path(value).expanduser().exists() and Path(value).expanduser().resolve().is_relative_to(folder):
            raise ValueError(
                f"--overwrite_output_dir would delete {folder}, which contains {flag} {value}. "
                "Keep the inputs outside the output folder."
            )
    if any(folder.iterdir()) and not (folder / STATE_FILE).is_file():
        raise ValueError(
            f"--overwrite_output_dir only deletes `tokenrec run` output folders, and {folder} has no {STATE_FILE}. "
            "Pass a new or empty folder as --output_dir, or delete this one yourself."
        )


def _check_base_tokenizer(source: str) -> None:
    """Load the text tokenizer once, so that a missing or non-T5 tokenizer fails before any training."""
    from .tokenization_tokenrec import TokenRecTokenizer

    try:
        # The same loader the tokenizer stage uses, for a local folder or a Hub id.
        tokenizer = TokenRecTokenizer._load_base_tokenizer(source)
    except HubUnreachableError:
        raise
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(
            f"Could not load a T5 tokenizer from {source} ({error}). Pass --base_tokenizer (or --backbone) a folder "
            "with t5-small's tokenizer.json or spiece.model."
        ) from error
    if "T5" not in type(tokenizer).__name__:
        raise ValueError(
            f"{source} contains a {type(tokenizer).__name__}, but TokenRec needs a T5 tokenizer. Pass --base_tokenizer "
            "(or --backbone) a folder with t5-small's tokenizer files."
        )


def run_pipeline(args: PipelineArguments) -> dict[str, Any]:
    """Run every unfinished stage and return the final metrics (also written to `metrics.json`)."""
    plan = validate_arguments(args)
    if args.num_threads is not None:
        torch.set_num_threads(args.num_threads)
    output_dir = Path(args.output_dir)
    if args.overwrite_output_dir and output_dir.exists():
        logger.warning(f"Deleting {output_dir} before the run, because of --overwrite_output_dir.")
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "plots").mkdir(exist_ok=True)
    save_arguments(args, output_dir)

    state = PipelineState(output_dir)
    for stage in STAGE_ARGUMENTS:
        state.check_arguments(stage, args)
    logger.warning(f"TokenRec pipeline on {args.dataset!r} into {output_dir}; backbone: {plan.description}.")

    from .stages import run_collaborative_stage, run_data_stage, run_llm_stage, run_test_stage, run_tokenizer_stage

    runners = {
        "data": run_data_stage,
        "collaborative": run_collaborative_stage,
        "tokenizers": run_tokenizer_stage,
        "llm": run_llm_stage,
        "test": run_test_stage,
    }
    # `--disable_tqdm` also hides the bars that transformers shows while it loads weights.
    bars_were_enabled = logging.is_progress_bar_enabled()
    if args.disable_tqdm:
        logging.disable_progress_bar()
    try:
        _run_stages(args, plan, output_dir, state, runners)
    finally:
        if bars_were_enabled:
            logging.enable_progress_bar()

    metrics_path = output_dir / "metrics.json"
    return load_json(metrics_path, what="metrics") if metrics_path.is_file() else {}


def _run_stages(
    args: PipelineArguments, plan: BackbonePlan, output_dir: Path, state: PipelineState, runners: dict[str, Any]
) -> None:
    for stage in STAGES:
        if state.finished(stage):
            logger.warning(f"Stage {stage!r} already finished in {output_dir}; skipping it.")
        else:
            state.forget_later_stages(stage)
            state.mark_started(stage, args)
            started = time.time()
            facts = runners[stage](args, plan, output_dir) or {}
            state.mark_finished(stage, args, seconds=round(time.time() - started, 1), **facts)
            logger.warning(f"Stage {stage!r} finished in {time.time() - started:.0f} s.")
        if stage == args.stop_after:
            break


def resume_command(output_dir: Path) -> str:
    """Return the `tokenrec run` command that continues `output_dir`, from its saved non-default arguments."""
    saved = load_json(output_dir / "pipeline_arguments.json", what="pipeline arguments")
    # The folder as the caller names it now (it may have moved), without `--stop_after`, so that the command
    # finishes, and without `--overwrite_output_dir`, so that it keeps the finished stages.
    saved.update(output_dir=str(output_dir), stop_after=None, overwrite_output_dir=False)
    parts = ["tokenrec run"]
    for name, value in sorted(saved.items()):
        if name not in ARGUMENT_DEFAULTS or value == ARGUMENT_DEFAULTS[name] or value is None:
            continue
        if isinstance(value, bool):
            parts.append(f"--{name}" if value else f"--{name} false")
        else:
            parts.append(f"--{name} {shlex.quote(str(value))}")
    return " ".join(parts)


def unfinished_stages(output_dir: Path) -> list[str]:
    """Return the stages a `tokenrec run` folder still has to run before it can recommend."""
    state = PipelineState(output_dir)
    return [stage for stage in ("tokenizers", "llm") if not state.finished(stage, log_missing=False)]


def save_arguments(args: PipelineArguments, output_dir: Path) -> None:
    """Write the arguments of the latest run to `pipeline_arguments.json`."""
    atomic_write_text(output_dir / "pipeline_arguments.json", json.dumps(asdict(args), indent=2, sort_keys=True))
