"""PNG plots of MQ-Tokenizer codeword usage and training curves.

The figures are drawn with `matplotlib.figure.Figure` on the Agg canvas, without pyplot, so plotting never changes the
caller's matplotlib backend or opens a window.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def plot_codebook_usage(
    codes: torch.Tensor, codebook_size: int, path: str | os.PathLike, title: str | None = None
) -> Path:
    r"""
    Save one bar chart per codebook with the number of entities assigned to each codeword, most used first.

    Args:
        codes (`torch.LongTensor` of shape `(N, K)`): The codes of N entities.
        codebook_size (`int`): L, the number of codewords per codebook.
        path (`str` or `os.PathLike`): The PNG file to write.
        title (`str`, *optional*): A title above the charts.

    Returns:
        `Path`: the written file.
    """
    codes = torch.as_tensor(codes).long().cpu()
    num_codebooks = codes.shape[1]
    figure = _new_figure(8, 2.2 * num_codebooks)
    axes = figure.subplots(num_codebooks, 1, squeeze=False)

    for k in range(num_codebooks):
        counts = torch.bincount(codes[:, k], minlength=codebook_size).sort(descending=True).values
        used = int((counts > 0).sum())
        axis = axes[k, 0]
        axis.bar(range(codebook_size), counts.tolist(), width=1.0)
        axis.set_ylabel("entities")
        axis.set_title(f"codebook {k + 1}: {used}/{codebook_size} codewords used ({used / codebook_size:.1%})")
    axes[-1, 0].set_xlabel("codeword rank (most used first)")
    if title:
        figure.suptitle(title)
    figure.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike, title: str | None = None) -> Path:
    r"""
    Save the per-epoch losses and codebook metrics of [`train_mq_tokenizer`] as a PNG.

    Args:
        history (`list[dict]`): `MQTokenizerTrainingResult.history`.
        path (`str` or `os.PathLike`): The PNG file to write.
        title (`str`, *optional*): A title above the charts.

    Returns:
        `Path`: the written file.

    Raises:
        ValueError: When `history` is empty.
    """
    if not history:
        raise ValueError("history is empty; train for at least one epoch before plotting it.")
    epochs = [record["epoch"] for record in history]
    figure = _new_figure(11, 4)
    loss_axis, code_axis = figure.subplots(1, 2)

    for key, label in (
        ("train_loss", "train total loss"),
        ("train_reconstruction_loss", "train reconstruction"),
        ("train_codebook_loss", "train codebook"),
        ("train_commitment_loss", "train commitment"),
        ("validation_reconstruction_loss", "validation reconstruction"),
    ):
        # The K-way codebook and commitment losses have equal values, so the commitment line is dashed on top.
        style = "--" if key == "train_commitment_loss" else "-"
        if key in history[0]:
            loss_axis.plot(epochs, [record[key] for record in history], style, label=label)
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("loss")
    loss_axis.set_yscale("log")
    loss_axis.legend()

    code_axis.plot(epochs, [record["min_usage"] for record in history], label="min codeword usage")
    code_axis.plot(epochs, [record["collision_rate"] for record in history], label="collision rate")
    code_axis.set_xlabel("epoch")
    code_axis.set_ylim(0, 1.02)
    code_axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


__all__ = ["plot_codebook_usage", "plot_training_curves"]
