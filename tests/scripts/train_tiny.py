"""Train a saved tiny TokenRec model for a few steps with TokenRecTrainer; launched by tests/test_distributed.py.

Run it with one process or several, for example:

    accelerate launch --multi_gpu --num_processes 2 tests/scripts/train_tiny.py \
        --model_dir MODEL --tokenizer_dir TOKENIZER --data_dir DATA --output_dir OUT --per_device_train_batch_size 2

The script trains on CPU (`use_cpu=True`), so the two processes talk through gloo. `--cpu` is not used because
accelerate 1.16 then starts one process unless mpirun is configured. The main process writes
`final_model.safetensors` (the trained state dict) and `metrics.json` (validation metrics, the number of processes
and the logged losses) in `--output_dir`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from safetensors.torch import save_file


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="Folder of a saved TokenRecForRetrieval.")
    parser.add_argument("--tokenizer_dir", required=True, help="Folder of a saved TokenRecTokenizer.")
    parser.add_argument("--data_dir", required=True, help="Folder of a saved InteractionData.")
    parser.add_argument("--output_dir", required=True, help="Where the checkpoints and results go.")
    parser.add_argument("--per_device_train_batch_size", type=int, default=4, help="Training examples per process.")
    parser.add_argument("--max_steps", type=int, default=4, help="Optimizer steps to run.")
    parser.add_argument("--seed", type=int, default=13, help="Seed of the run.")
    return parser.parse_args()


def main() -> None:
    cli = parse_args()

    from tokenrec_hf.data import InteractionData
    from tokenrec_hf.modeling_tokenrec import TokenRecForRetrieval
    from tokenrec_hf.tokenization_tokenrec import TokenRecTokenizer
    from tokenrec_hf.trainer import TokenRecTrainer
    from tokenrec_hf.training_args import TokenRecTrainingArguments

    args = TokenRecTrainingArguments(
        output_dir=cli.output_dir,
        per_device_train_batch_size=cli.per_device_train_batch_size,
        per_device_eval_batch_size=3,
        max_steps=cli.max_steps,
        # Plain SGD: Adam turns float noise in near-zero gradients into full-size steps, so two runs that differ
        # only in the all-reduce summation order would drift apart on those weights.
        optim="sgd",
        learning_rate=0.5,
        lr_scheduler_type="constant",
        seed=cli.seed,
        logging_steps=1,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        plot_training_curves=False,
        use_cpu=True,
        disable_tqdm=True,
        report_to="none",
    )
    model = TokenRecForRetrieval.from_pretrained(cli.model_dir)
    tokenizer = TokenRecTokenizer.from_pretrained(cli.tokenizer_dir)
    data = InteractionData.from_pretrained(cli.data_dir)

    trainer = TokenRecTrainer(model=model, args=args, data=data, processing_class=tokenizer)
    trainer.train()
    metrics = trainer.evaluate()

    if trainer.is_world_process_zero():
        output_dir = Path(cli.output_dir)
        state_dict = {name: tensor.detach().cpu().clone() for name, tensor in trainer.model.state_dict().items()}
        save_file(state_dict, output_dir / "final_model.safetensors")
        losses = [row for row in trainer.state.log_history if "loss" in row]
        result = {"num_processes": trainer.accelerator.num_processes, "metrics": metrics, "losses": losses}
        (output_dir / "metrics.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
