"""Configuration of the collaborative-filtering model (LightGCN or matrix factorization) that feeds TokenRec."""

from __future__ import annotations

from transformers import PreTrainedConfig

from ..utils.versioning import package_version_stamp

ARCHITECTURES = ("lightgcn", "mf")


class CollaborativeConfig(PreTrainedConfig):
    r"""
    Configuration of a [`CollaborativeModel`]: the user and item embedding tables and how they are propagated.

    Args:
        architecture (`str`, *optional*, defaults to `"lightgcn"`):
            `"lightgcn"` (embeddings propagated over the user-item graph, representations are the mean of layers
            0..L) or `"mf"` (matrix factorization, representations are the embeddings themselves).
        num_users (`int`, *optional*, defaults to 1):
            Rows of the user table (users seen in training).
        num_items (`int`, *optional*, defaults to 1):
            Rows of the item table.
        embedding_dim (`int`, *optional*, defaults to 64):
            Size of every user and item embedding.
        num_layers (`int`, *optional*, defaults to 3):
            LightGCN propagation layers L. Ignored (and stored as 0) for `"mf"`.
        init_std (`float`, *optional*, defaults to 0.1):
            Standard deviation of the normal initialization of both tables, as in the LightGCN paper's code.
        fold_in_steps (`int`, *optional*, defaults to 100):
            BPR steps used by matrix-factorization fold-in (LightGCN fold-in needs no steps).
        fold_in_learning_rate (`float`, *optional*, defaults to 0.05):
            Adam learning rate of matrix-factorization fold-in.
        fold_in_reg_weight (`float`, *optional*, defaults to 1e-4):
            L2 weight on the new vectors during matrix-factorization fold-in.
        fold_in_seed (`int`, *optional*, defaults to 0):
            Seed of the negatives drawn during matrix-factorization fold-in, so fold-in is deterministic.

    Raises:
        ValueError: When a value is outside its accepted range; the message names the value.
    """

    model_type = "tokenrec_collaborative"

    def __init__(
        self,
        architecture: str = "lightgcn",
        num_users: int = 1,
        num_items: int = 1,
        embedding_dim: int = 64,
        num_layers: int = 3,
        init_std: float = 0.1,
        fold_in_steps: int = 100,
        fold_in_learning_rate: float = 0.05,
        fold_in_reg_weight: float = 1e-4,
        fold_in_seed: int = 0,
        tokenrec_hf_version: str | None = None,
        **kwargs,
    ) -> None:
        if architecture not in ARCHITECTURES:
            raise ValueError(f"architecture={architecture!r} is not supported; use one of {list(ARCHITECTURES)}.")
        for name, value in (("num_users", num_users), ("num_items", num_items), ("embedding_dim", embedding_dim)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}={value!r} must be a positive integer.")
        if not isinstance(num_layers, int) or num_layers < 0:
            raise ValueError(
                f"num_layers={num_layers!r} must be a non-negative integer (3 is the usual LightGCN value)."
            )
        if init_std <= 0:
            raise ValueError(f"init_std={init_std!r} must be positive, for example 0.1.")
        if fold_in_steps < 1 or fold_in_learning_rate <= 0 or fold_in_reg_weight < 0:
            raise ValueError(
                f"fold_in_steps={fold_in_steps!r} must be >= 1, fold_in_learning_rate={fold_in_learning_rate!r} > 0 "
                f"and fold_in_reg_weight={fold_in_reg_weight!r} >= 0."
            )

        self.architecture = architecture
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers if architecture == "lightgcn" else 0
        self.init_std = init_std
        self.fold_in_steps = fold_in_steps
        self.fold_in_learning_rate = fold_in_learning_rate
        self.fold_in_reg_weight = fold_in_reg_weight
        self.fold_in_seed = fold_in_seed
        self.tokenrec_hf_version = tokenrec_hf_version or package_version_stamp()["tokenrec_hf_version"]
        super().__init__(**kwargs)


__all__ = ["ARCHITECTURES", "CollaborativeConfig"]
