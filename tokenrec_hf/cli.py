"""The `tokenrec` command: `tokenrec run` trains every stage, `tokenrec recommend` queries a trained folder.

Examples:

```bash
# Every stage on LastFM, offline, with a randomly initialized t5-small that uses the real vocabulary.
tokenrec run --dataset lastfm --data_dir data/LastFM --backbone path/to/t5-small --output_dir outputs/lastfm

# Top-10 items for a known user, and for a new user given by raw item ids.
tokenrec recommend --model_dir outputs/lastfm --user 42 --top_k 10
tokenrec recommend --model_dir outputs/lastfm --history 12 873 1001
```
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from transformers import HfArgumentParser
from transformers.utils import logging

from .pipeline import STATE_FILE, PipelineArguments, resume_command, run_pipeline, unfinished_stages
from .version import __version__

PROMPT_KINDS = ("history", "user_only", "unseen")


@dataclass
class RecommendArguments:
    """Arguments of `tokenrec recommend`."""

    model_dir: str = field(
        metadata={"help": "Output folder of `tokenrec run` (or any folder with model + tokenizer)."}
    )
    user: list[str] | None = field(default=None, metadata={"help": "Raw ids of known users."})
    history: list[str] | None = field(
        default=None, metadata={"help": "Raw item ids of one new user's history, oldest first."}
    )
    top_k: int = field(default=10, metadata={"help": "Number of items to recommend per user."})
    prompt: str = field(default="history", metadata={"help": "Prompt kind: 'history', 'user_only' or 'unseen'."})

    def __post_init__(self) -> None:
        self.prompt = self.prompt.lower()
        if self.prompt not in PROMPT_KINDS:
            raise ValueError(f"--prompt {self.prompt!r} is not supported; use one of {list(PROMPT_KINDS)}.")
        if self.top_k < 1:
            raise ValueError(f"--top_k {self.top_k} must be a positive integer.")


def recommend_from_folder(args: RecommendArguments) -> list[dict]:
    """Load a trained folder and return, per user, the top-K raw item ids with their scores.

    Raises:
        ValueError: When neither `user` nor `history` is given, or a user id is unknown (the message explains how
            to pass a history instead).
    """
    from .collaborative import CollaborativeModel
    from .data import InteractionData
    from .modeling_tokenrec import TokenRecForRetrieval
    from .tokenization_tokenrec import TokenRecTokenizer
    from .trainer import resolve_eval_template

    if not args.user and not args.history:
        raise ValueError("Pass --user RAW_ID for a known user, or --history ITEM [ITEM ...] for a new user.")
    folder = Path(args.model_dir)
    if folder.is_file():
        raise NotADirectoryError(f"--model_dir {folder} is a file; pass the output folder of `tokenrec run`.")
    if not folder.is_dir():
        raise FileNotFoundError(f"--model_dir {folder} does not exist; pass the output folder of `tokenrec run`.")
    if (folder / STATE_FILE).is_file() and (unfinished := unfinished_stages(folder)):
        hint = (
            f"Finish it with `{resume_command(folder)}`."
            if (folder / "pipeline_arguments.json").is_file()
            else "Run `tokenrec run` again with the same arguments to finish it."
        )
        raise ValueError(
            f"--model_dir {folder} is a `tokenrec run` folder whose stages {unfinished} have not finished. {hint}"
        )
    tokenizer = _load("tokenizer", TokenRecTokenizer.from_pretrained, folder)
    model = _load("model", TokenRecForRetrieval.from_pretrained, folder)
    model.eval()
    template = resolve_eval_template(tokenizer, args.prompt)
    data = InteractionData.from_pretrained(folder / "data") if (folder / "data").is_dir() else None
    collaborative = None
    if (folder / "collaborative").is_dir():
        collaborative = _load("collaborative model", CollaborativeModel.from_pretrained, folder / "collaborative")

    requests = []
    known = set(tokenizer.user_ids)
    for user in args.user or []:
        if user not in known:
            raise ValueError(
                f"User {user!r} is not in this model's tokenizer ({len(known)} known users). To recommend for a new "
                "user, pass their interaction history instead: --history ITEM [ITEM ...] (raw item ids)."
            )
        history = []
        if data is not None:
            index = data.user_index(user)
            history = [data.item_ids[item] for item in data.history(index, "test")]
        requests.append(("user", user, history))
    if args.history:
        catalog = set(tokenizer.item_ids)
        unknown = [item for item in args.history if item not in catalog]
        if unknown:
            raise ValueError(
                f"--history has {len(unknown)} item ids that are not in this model's catalog of {len(catalog)} items: "
                f"{unknown[:10]}{' (the first 10)' if len(unknown) > 10 else ''}. Remove them from --history. To add new items, see the how-to guide on new users "
                "and items (docs/howto/new_users_and_items.md), which uses the Python API."
            )
        requests.append(("history", None, list(args.history)))

    outputs = []
    for kind, user, history in requests:
        result = model.recommend(
            tokenizer,
            users=[user] if kind == "user" else None,
            histories=[history],
            top_k=args.top_k,
            template=template,
            collaborative_model=collaborative,
        )
        outputs.append(
            {
                "user": user if kind == "user" else "new user",
                "items": result.item_ids[0],
                "scores": [round(float(score), 4) for score in result.scores[0]],
            }
        )
    return outputs


def _load(artifact: str, loader: Callable[[Path], Any], folder: Path) -> Any:
    """Call `loader(folder)`, naming the artifact and its folder when a safetensors file in it is corrupted."""
    try:
        return loader(folder)
    except SafetensorError as error:
        raise ValueError(
            f"The {artifact} in {folder} has a corrupted safetensors file ({error}). Copy the folder again, or delete "
            "the damaged stage's files there and run `tokenrec run` again with the same arguments to rebuild them."
        ) from error


def format_recommendations(outputs: list[dict]) -> str:
    """Format recommendations as one Markdown table per user."""
    blocks = []
    for output in outputs:
        lines = [f"Top-{len(output['items'])} for {output['user']}:", "| rank | item | score |", "|---|---|---|"]
        for rank, (item, score) in enumerate(zip(output["items"], output["scores"], strict=True), start=1):
            lines.append(f"| {rank} | {item} | {score:.4f} |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"run": PipelineArguments, "recommend": RecommendArguments}
    if not argv or argv[0] not in commands:
        top = argparse.ArgumentParser(prog="tokenrec", description="TokenRec for Hugging Face.")
        top.add_argument("command", choices=sorted(commands), help="'run' trains every stage; 'recommend' queries.")
        top.add_argument("--version", action="version", version=f"tokenrec_hf {__version__}")
        if argv and argv[0] in {"-h", "--help", "--version"}:
            top.parse_args(argv[:1])  # prints the help or the version, and exits with status 0
        top.print_help(sys.stderr)
        if argv:
            print(f"tokenrec: error: unknown command {argv[0]!r}; use 'run' or 'recommend'.", file=sys.stderr)
        return 2

    command, rest = argv[0], argv[1:]
    parser = HfArgumentParser(commands[command])
    parser.prog = f"tokenrec {command}"
    try:
        (arguments,) = parser.parse_args_into_dataclasses(args=rest)
        if command == "run":
            run_pipeline(arguments)
        else:
            # The weight-loading bars of transformers would clutter the table that this command prints.
            bars_were_enabled = logging.is_progress_bar_enabled()
            logging.disable_progress_bar()
            try:
                print(format_recommendations(recommend_from_folder(arguments)))
            finally:
                if bars_were_enabled:
                    logging.enable_progress_bar()
    except SafetensorError as error:
        print(
            f"tokenrec {command}: error: a safetensors file is corrupted ({error}). Delete the damaged stage's files "
            "and run `tokenrec run` again with the same arguments to rebuild them.",
            file=sys.stderr,
        )
        return 1
    except KeyError as error:
        print(f"tokenrec {command}: error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, NotADirectoryError, OSError) as error:
        print(f"tokenrec {command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tokenrec {command}: interrupted. Run the same command again to resume.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
