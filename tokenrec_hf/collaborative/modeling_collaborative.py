"""LightGCN and matrix factorization with BPR, the collaborative-filtering stage that gives TokenRec its embeddings.

LightGCN (He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for Recommendation", SIGIR 2020)
propagates the user and item embedding tables over the user-item graph with the symmetric normalized adjacency
`A = D^{-1/2} [[0, R], [R^T, 0]] D^{-1/2}` and represents every node by the mean of layers 0..L:
`E = (E^(0) + A E^(0) + ... + A^L E^(0)) / (L + 1)`. The propagated mean, not the layer-0 (ego) table, is what
TokenRec quantizes and retrieves with.

NOTE: The TokenRec paper (Qu et al.) does not fix how a user or item that was not in training gets an embedding.
`CollaborativeModel.fold_in_users` / `fold_in_items` implement LightGCN propagation over the frozen tables
(formula in their docstrings) and a short BPR fit for matrix factorization.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput, logging

from ..utils.hub import resolve_pretrained_folder
from ..utils.io import atomic_directory, atomic_write_json, load_json
from ..utils.versioning import check_artifact_version, package_version_stamp
from .configuration_collaborative import CollaborativeConfig

logger = logging.get_logger(__name__)

ID_MAPS_NAME = "id_maps.json"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


# Graph construction and propagation.


@dataclass
class InteractionGraph:
    """The symmetric normalized user-item adjacency of the training interactions.

    Attributes:
        adjacency: `[U + I, U + I]` sparse matrix; users are rows `0..U-1` and items rows `U..U+I-1`.
        user_degrees: `FloatTensor[U]`, training interactions per user.
        item_degrees: `FloatTensor[I]`, training interactions per item.
    """

    adjacency: torch.Tensor
    user_degrees: torch.Tensor
    item_degrees: torch.Tensor

    @property
    def num_users(self) -> int:
        return self.user_degrees.shape[0]

    @property
    def num_items(self) -> int:
        return self.item_degrees.shape[0]


def build_interaction_graph(
    users: torch.Tensor, items: torch.Tensor, num_users: int, num_items: int, *, layout: str = "csr"
) -> InteractionGraph:
    """Build the symmetric normalized adjacency `D^{-1/2} A D^{-1/2}` of the bipartite user-item graph.

    Duplicate (user, item) pairs count once. Nodes without interactions keep degree 0 and an all-zero row.

    Args:
        users: `LongTensor[n]` user indices of the training interactions.
        items: `LongTensor[n]` item indices of the same interactions.
        num_users: Number of user nodes.
        num_items: Number of item nodes.
        layout: `"csr"` (fast sparse-dense products) or `"coo"`.

    Returns:
        An [`InteractionGraph`].

    Raises:
        ValueError: For mismatched lengths, indices outside the tables, or an unknown layout.
    """
    if layout not in ("csr", "coo"):
        raise ValueError(f"layout={layout!r} is not supported; use 'csr' or 'coo'.")
    users = torch.as_tensor(users, dtype=torch.long)
    items = torch.as_tensor(items, dtype=torch.long)
    if users.shape != items.shape or users.dim() != 1:
        raise ValueError(
            f"users and items must be 1-D of equal length; got {tuple(users.shape)} and {tuple(items.shape)}."
        )
    for kind, values, size in (("user", users, num_users), ("item", items, num_items)):
        invalid = (values < 0) | (values >= size)
        if bool(invalid.any()):
            position = int(invalid.nonzero()[0])
            raise ValueError(
                f"Interaction {position} has {kind} index {int(values[position])}, outside [0, {size}); build the "
                f"graph with the {kind} count of the dataset the interactions come from."
            )

    pairs = torch.unique(users * num_items + items)
    users, items = pairs // num_items, pairs % num_items
    user_degrees = torch.bincount(users, minlength=num_users).float()
    item_degrees = torch.bincount(items, minlength=num_items).float()
    weights = (user_degrees[users] * item_degrees[items]).rsqrt()

    rows = torch.cat([users, items + num_users])
    columns = torch.cat([items + num_users, users])
    size = num_users + num_items
    adjacency = torch.sparse_coo_tensor(
        torch.stack([rows, columns]), torch.cat([weights, weights]), (size, size), check_invariants=False
    ).coalesce()
    if layout == "csr":
        with warnings.catch_warnings():
            # torch flags every CSR tensor as beta; CSR sparse-dense products are what this module relies on.
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta state")
            adjacency = adjacency.to_sparse_csr()
    return InteractionGraph(adjacency=adjacency, user_degrees=user_degrees, item_degrees=item_degrees)


def propagate_layers(adjacency: torch.Tensor, embeddings: torch.Tensor, num_layers: int) -> list[torch.Tensor]:
    """Return `[E, A E, ..., A^L E]`, the LightGCN layers 0..L (no autograd bookkeeping needed by the caller)."""
    layers = [embeddings]
    for _ in range(num_layers):
        layers.append(torch.sparse.mm(adjacency, layers[-1]))
    return layers


def _propagate_mean(adjacency: torch.Tensor, embeddings: torch.Tensor, num_layers: int) -> torch.Tensor:
    total = embeddings.clone()
    current = embeddings
    for _ in range(num_layers):
        current = torch.sparse.mm(adjacency, current)
        total.add_(current)
    return total.div_(num_layers + 1)


class LightGCNPropagation(torch.autograd.Function):
    """The LightGCN layer mean `M E = (I + A + ... + A^L) E / (L + 1)` with a hand-written backward.

    Because `A` is symmetric, `M` is symmetric too, so the gradient `M^T G` equals `M G`: the backward pass runs the
    same sparse products as the forward pass on the incoming gradient. No intermediate layer is stored for autograd,
    the sparse matrix is never transposed, and the running sum replaces a stack-then-mean.
    """

    @staticmethod
    def forward(ctx, embeddings: torch.Tensor, adjacency: torch.Tensor, num_layers: int) -> torch.Tensor:
        ctx.adjacency = adjacency
        ctx.num_layers = num_layers
        return _propagate_mean(adjacency, embeddings.detach(), num_layers)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        grad_embeddings = _propagate_mean(ctx.adjacency, grad_output.contiguous(), ctx.num_layers)
        return grad_embeddings, None, None


def propagate_autograd(adjacency: torch.Tensor, embeddings: torch.Tensor, num_layers: int) -> torch.Tensor:
    """Plain LightGCN propagation through autograd (`torch.sparse.mm` then `stack().mean()`), the reference and
    benchmark baseline for [`LightGCNPropagation`]."""
    return torch.stack(propagate_layers(adjacency, embeddings, num_layers), dim=0).mean(dim=0)


# Model.


@dataclass
class CollaborativeOutput(ModelOutput):
    """Output of [`CollaborativeModel.forward`].

    Args:
        loss: BPR loss plus the L2 penalty, when positives and negatives were given.
        bpr_loss: Mean `-log sigmoid(s(u, i) - s(u, j))`.
        reg_loss: The weighted L2 penalty on the batch's layer-0 embeddings.
        positive_scores: `[B]` scores of the positive items.
        negative_scores: `[B]` scores of the negative items.
    """

    loss: torch.FloatTensor | None = None
    bpr_loss: torch.FloatTensor | None = None
    reg_loss: torch.FloatTensor | None = None
    positive_scores: torch.FloatTensor | None = None
    negative_scores: torch.FloatTensor | None = None


class CollaborativePreTrainedModel(PreTrainedModel):
    """Base class that ties [`CollaborativeConfig`] to weight initialization and loading."""

    config_class = CollaborativeConfig
    base_model_prefix = "collaborative"
    main_input_name = "users"

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)


class CollaborativeModel(CollaborativePreTrainedModel):
    """User and item embeddings trained with BPR, as LightGCN or matrix factorization.

    For LightGCN the model also stores every propagated layer and the node degrees of the training graph
    (`user_layers [L+1, U, d]`, `item_layers [L+1, I, d]`, `user_degrees`, `item_degrees`). They are filled by
    [`~CollaborativeModel.propagate`] (called at the end of training) and saved with the weights, so a loaded model
    gives representations and folds in new users and items without the training graph.

    Attributes:
        user_ids: Raw user id per row, saved as `id_maps.json`.
        item_ids: Raw item id per row, saved as `id_maps.json`.
    """

    def __init__(self, config: CollaborativeConfig) -> None:
        super().__init__(config)
        self.user_embedding = nn.Embedding(config.num_users, config.embedding_dim)
        self.item_embedding = nn.Embedding(config.num_items, config.embedding_dim)
        if config.architecture == "lightgcn":
            layers = config.num_layers + 1
            self.register_buffer("user_layers", torch.zeros(layers, config.num_users, config.embedding_dim))
            self.register_buffer("item_layers", torch.zeros(layers, config.num_items, config.embedding_dim))
            self.register_buffer("user_degrees", torch.zeros(config.num_users))
            self.register_buffer("item_degrees", torch.zeros(config.num_items))
        self.user_ids: list[str] = [str(index) for index in range(config.num_users)]
        self.item_ids: list[str] = [str(index) for index in range(config.num_items)]
        self.post_init()

    # Initialization, propagation and representations.

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Draw both tables from `N(0, init_std^2)` with `generator`, so a seed fixes the initialization."""
        with torch.no_grad():
            for table in (self.user_embedding.weight, self.item_embedding.weight):
                table.copy_(torch.randn(table.shape, generator=generator) * self.config.init_std)
        if self.is_lightgcn:
            for buffer in (self.user_layers, self.item_layers, self.user_degrees, self.item_degrees):
                buffer.zero_()

    @property
    def is_lightgcn(self) -> bool:
        return self.config.architecture == "lightgcn"

    def ego_embeddings(self) -> torch.Tensor:
        """Return the layer-0 tables stacked as one `[U + I, d]` node table (users first)."""
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight], dim=0)

    def propagated_embeddings(
        self, graph: InteractionGraph, *, fused: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Propagate the tables over `graph` with gradients and return `(users [U, d], items [I, d])`.

        Args:
            graph: The training graph from [`build_interaction_graph`].
            fused: Use [`LightGCNPropagation`] (fast backward). `False` uses plain autograd, for reference.
        """
        self._check_graph(graph)
        embeddings = self.ego_embeddings()
        if fused:
            propagated = LightGCNPropagation.apply(embeddings, graph.adjacency, self.config.num_layers)
        else:
            propagated = propagate_autograd(graph.adjacency, embeddings, self.config.num_layers)
        return propagated[: self.config.num_users], propagated[self.config.num_users :]

    @torch.no_grad()
    def propagate(self, graph: InteractionGraph) -> None:
        """Store every propagated layer and the degrees of `graph`; the representations are read from them.

        Raises:
            ValueError: When `graph` has a different number of users or items than the model.
        """
        if not self.is_lightgcn:
            return
        self._check_graph(graph)
        layers = propagate_layers(graph.adjacency, self.ego_embeddings().detach(), self.config.num_layers)
        stacked = torch.stack(layers, dim=0)
        self.user_layers.copy_(stacked[:, : self.config.num_users])
        self.item_layers.copy_(stacked[:, self.config.num_users :])
        self.user_degrees.copy_(graph.user_degrees)
        self.item_degrees.copy_(graph.item_degrees)

    def _check_graph(self, graph: InteractionGraph) -> None:
        if graph.num_users != self.config.num_users or graph.num_items != self.config.num_items:
            raise ValueError(
                f"The graph has {graph.num_users} users and {graph.num_items} items but the model has "
                f"{self.config.num_users} and {self.config.num_items}; build the graph from the same dataset."
            )

    def _check_propagated(self) -> None:
        if self.is_lightgcn and float(self.user_degrees.sum()) == 0.0:
            raise RuntimeError(
                "This LightGCN model has no propagated layers yet. Train it with `train_collaborative`, or call "
                "`model.propagate(build_interaction_graph(users, items, num_users, num_items))`."
            )

    @property
    def user_representations(self) -> torch.Tensor:
        """`[U, d]` user representations: LightGCN's mean of layers 0..L, or the MF user table."""
        if not self.is_lightgcn:
            return self.user_embedding.weight.detach()
        self._check_propagated()
        return self.user_layers.mean(dim=0)

    @property
    def item_representations(self) -> torch.Tensor:
        """`[I, d]` item representations: LightGCN's mean of layers 0..L, or the MF item table."""
        if not self.is_lightgcn:
            return self.item_embedding.weight.detach()
        self._check_propagated()
        return self.item_layers.mean(dim=0)

    # Training step.

    def forward(
        self,
        users: torch.LongTensor,
        positive_items: torch.LongTensor | None = None,
        negative_items: torch.LongTensor | None = None,
        graph: InteractionGraph | None = None,
        reg_weight: float = 0.0,
        fused: bool = True,
    ) -> CollaborativeOutput:
        """Score `(user, item)` pairs and compute the BPR loss when both positives and negatives are given.

        Args:
            users: `[B]` user indices.
            positive_items: `[B]` observed items.
            negative_items: `[B]` sampled unobserved items.
            graph: For LightGCN training, the training graph; the tables are propagated with gradients. Without it,
                LightGCN scores with the stored representations (no gradient).
            reg_weight: Weight of `0.5 * (|e_u|^2 + |e_i|^2 + |e_j|^2)` on the layer-0 rows, averaged over the batch.
            fused: Use the fused propagation (see [`LightGCNPropagation`]).

        Returns:
            [`CollaborativeOutput`] with the loss first.
        """
        if self.is_lightgcn and graph is not None:
            user_table, item_table = self.propagated_embeddings(graph, fused=fused)
        elif self.is_lightgcn:
            user_table, item_table = self.user_representations, self.item_representations
        else:
            user_table, item_table = self.user_embedding.weight, self.item_embedding.weight

        user_vectors = user_table[users]  # [B, d]
        positive_scores = negative_scores = None
        if positive_items is not None:
            positive_scores = (user_vectors * item_table[positive_items]).sum(dim=-1)  # [B]
        if negative_items is not None:
            negative_scores = (user_vectors * item_table[negative_items]).sum(dim=-1)  # [B]

        loss = bpr_loss = reg_loss = None
        if positive_scores is not None and negative_scores is not None:
            bpr_loss = -nn.functional.logsigmoid(positive_scores - negative_scores).mean()
            squared_norms = (
                self.user_embedding(users).pow(2).sum()
                + self.item_embedding(positive_items).pow(2).sum()
                + self.item_embedding(negative_items).pow(2).sum()
            )
            reg_loss = reg_weight * 0.5 * squared_norms / users.shape[0]
            loss = bpr_loss + reg_loss
        return CollaborativeOutput(
            loss=loss,
            bpr_loss=bpr_loss,
            reg_loss=reg_loss,
            positive_scores=positive_scores,
            negative_scores=negative_scores,
        )

    # Fold-in of users and items that were not in training.

    def _resolve_lists(self, lists: Sequence[Sequence[int | str]], kind: str) -> list[list[int]]:
        """Map raw ids or indices to unique row indices of the `kind` table, with errors that name the bad value."""
        ids = self.item_ids if kind == "item" else self.user_ids
        size = len(ids)
        lookup = None
        resolved = []
        for row, values in enumerate(lists):
            if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
                raise ValueError(f"Entry {row} is {values!r}; pass a list of {kind} indices or raw {kind} ids.")
            if len(values) == 0:
                raise ValueError(
                    f"Entry {row} has no {kind}s; fold-in needs at least one {kind} it interacted with. Drop it or "
                    f"give it a fallback embedding (for example the mean {kind} representation)."
                )
            indices = []
            for value in values:
                if isinstance(value, str):
                    if lookup is None:
                        lookup = {raw: index for index, raw in enumerate(ids)}
                    if value not in lookup:
                        raise ValueError(
                            f"Unknown {kind} id {value!r} in entry {row}: it is not in this model's {kind} id map. "
                            f"Fold the new {kind} in first or drop it."
                        )
                    indices.append(lookup[value])
                else:
                    index = int(value)
                    if not 0 <= index < size:
                        raise ValueError(
                            f"{kind.capitalize()} index {index} in entry {row} is outside [0, {size}); pass 0-based "
                            f"row indices of this model or raw {kind} ids as strings."
                        )
                    indices.append(index)
            resolved.append(sorted(set(indices)))
        return resolved

    @torch.no_grad()
    def fold_in_users(self, histories: Sequence[Sequence[int | str]]) -> torch.Tensor:
        r"""Compute representations for users outside training from the items they interacted with.

        LightGCN: a new user `u` with history `H` (n = |H| items) is attached to the frozen training graph. Its
        layers `k = 1..L` follow the LightGCN rule over the stored item layers and training item degrees `d_i`:

            e_u^(k) = sum_{i in H} e_i^(k-1) / sqrt(n * max(d_i, 1)).

        The layer-0 (ego) vector of a new user was never trained, so it is set to `e_u^(1)`, the normalized sum of
        the history's item ego embeddings. The representation is `(e_u^(0) + ... + e_u^(L)) / (L + 1)`, like for
        trained users. For a seen user whose history is exactly their training items, layers 1..L equal their
        trained layers, so only the layer-0 term differs. Item degrees and item layers are not updated.

        Matrix factorization: the user vector starts at the mean of the history's item vectors. It then takes
        `config.fold_in_steps` Adam steps of BPR against the frozen item table, with learning rate
        `config.fold_in_learning_rate` and L2 weight `config.fold_in_reg_weight`. Negatives are drawn uniformly
        outside the history from a generator seeded with `config.fold_in_seed`, so the result is deterministic.

        Args:
            histories: For each new user, item row indices or raw item ids (strings).

        Returns:
            `FloatTensor[len(histories), d]`, comparable with `user_representations`.

        Raises:
            ValueError: For an empty history, an unknown raw id or an index outside the item table.
            RuntimeError: When a LightGCN model was never propagated.
        """
        lists = self._resolve_lists(histories, "item")
        if self.is_lightgcn:
            self._check_propagated()
            return self._fold_in_lightgcn(lists, self.item_layers, self.item_degrees)
        return self._fold_in_bpr(lists, self.item_embedding.weight.detach(), role="user")

    @torch.no_grad()
    def fold_in_items(self, user_lists: Sequence[Sequence[int | str]]) -> torch.Tensor:
        r"""Compute representations for items outside training from the users who interacted with them.

        This mirrors [`~CollaborativeModel.fold_in_users`] with the roles swapped. For LightGCN, a new item `j`
        with users `V` (m = |V|) gets `e_j^(k) = sum_{v in V} e_v^(k-1) / sqrt(m * max(d_v, 1))` for `k = 1..L`
        over the stored user layers and degrees, `e_j^(0) = e_j^(1)`, and the mean of the L + 1 layers. For matrix
        factorization, a short seeded BPR fit against the frozen user table.

        Args:
            user_lists: For each new item, user row indices or raw user ids (strings).

        Returns:
            `FloatTensor[len(user_lists), d]`, comparable with `item_representations`.

        Raises:
            ValueError: For an empty list, an unknown raw id or an index outside the user table.
            RuntimeError: When a LightGCN model was never propagated.
        """
        lists = self._resolve_lists(user_lists, "user")
        if self.is_lightgcn:
            self._check_propagated()
            return self._fold_in_lightgcn(lists, self.user_layers, self.user_degrees)
        return self._fold_in_bpr(lists, self.user_embedding.weight.detach(), role="item")

    def _fold_in_lightgcn(
        self, lists: list[list[int]], neighbor_layers: torch.Tensor, neighbor_degrees: torch.Tensor
    ) -> torch.Tensor:
        rows = torch.repeat_interleave(torch.arange(len(lists)), torch.tensor([len(values) for values in lists]))
        neighbors = torch.tensor([value for values in lists for value in values], dtype=torch.long)
        counts = torch.tensor([len(values) for values in lists], dtype=torch.float)
        weights = (counts[rows] * neighbor_degrees[neighbors].clamp(min=1.0)).rsqrt()  # [nnz]

        layers = []
        for k in range(1, self.config.num_layers + 1):
            layer = torch.zeros(len(lists), self.config.embedding_dim)
            layer.index_add_(0, rows, neighbor_layers[k - 1, neighbors] * weights[:, None])
            layers.append(layer)
        # The untrained ego vector is replaced by the first propagated layer (see the docstring).
        layers.insert(0, layers[0] if layers else neighbor_layers[0, neighbors].new_zeros(len(lists), 1))
        return torch.stack(layers, dim=0).mean(dim=0)

    def _fold_in_bpr(self, lists: list[list[int]], fixed_table: torch.Tensor, role: str) -> torch.Tensor:
        config = self.config
        num_fixed = fixed_table.shape[0]
        rows = torch.repeat_interleave(torch.arange(len(lists)), torch.tensor([len(values) for values in lists]))
        positives = torch.tensor([value for values in lists for value in values], dtype=torch.long)
        if any(len(values) >= num_fixed for values in lists):
            raise ValueError(f"A {role} to fold in interacted with every row of the frozen table; no negatives exist.")
        observed = torch.unique(rows * num_fixed + positives)
        generator = torch.Generator().manual_seed(config.fold_in_seed)

        start = torch.zeros(len(lists), fixed_table.shape[1])
        start.index_add_(0, rows, fixed_table[positives])
        start /= torch.bincount(rows, minlength=len(lists)).float()[:, None]
        vectors = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([vectors], lr=config.fold_in_learning_rate)
        with torch.enable_grad():
            for _ in range(config.fold_in_steps):
                negatives = sample_negatives(rows, observed, num_fixed, generator)
                scores = vectors[rows]
                difference = (scores * (fixed_table[positives] - fixed_table[negatives])).sum(dim=-1)
                loss = -nn.functional.logsigmoid(difference).mean()
                loss = loss + config.fold_in_reg_weight * 0.5 * vectors.pow(2).sum() / len(lists)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        return vectors.detach()

    # Saving and loading.

    def save_pretrained(self, save_directory: str | Path, *args, push_to_hub: bool = False, **kwargs) -> None:
        """Save `config.json`, `model.safetensors` and `id_maps.json` atomically into `save_directory`.

        Args:
            save_directory: Target folder; files written here replace their counterparts in one rename each.
            push_to_hub: Also upload the folder with [`~transformers.utils.PushToHubMixin.push_to_hub`], to
                `kwargs["repo_id"]` or the folder name.
            *args, **kwargs: Passed to `PreTrainedModel.save_pretrained`.
        """
        repo_id = kwargs.pop("repo_id", None)
        hub_kwargs = {key: kwargs.pop(key) for key in ("commit_message", "private", "token") if key in kwargs}
        if len(self.user_ids) != self.config.num_users or len(self.item_ids) != self.config.num_items:
            raise ValueError(
                f"The id maps have {len(self.user_ids)} users and {len(self.item_ids)} items but the config has "
                f"{self.config.num_users} and {self.config.num_items}; set `model.user_ids` / `model.item_ids` to one "
                "raw id per row."
            )

        # The stamp names the package that writes the files, also for a model loaded from an older save.
        self.config.tokenrec_hf_version = package_version_stamp()["tokenrec_hf_version"]
        with atomic_directory(save_directory) as staging:
            super().save_pretrained(staging, *args, **kwargs)
            atomic_write_json(staging / ID_MAPS_NAME, {"user_ids": self.user_ids, "item_ids": self.item_ids})
        if push_to_hub:
            self.push_to_hub(repo_id or Path(save_directory).name, **hub_kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | Path,
        *args,
        revision: str | None = None,
        cache_dir: str | Path | None = None,
        token: str | bool | None = None,
        local_files_only: bool = False,
        **kwargs,
    ) -> CollaborativeModel:
        """Load a model saved by [`~CollaborativeModel.save_pretrained`] from a folder or a Hub repository.

        The folder is checked before loading: every file must exist and parse, and the tensors must have the shapes
        the config implies.

        Raises:
            FileNotFoundError: When a required file is missing (the message lists what the folder contains).
            ValueError: When a file is corrupted, or the weights and id maps do not match the config.
            HubUnreachableError: When a Hub id cannot be downloaded.
        """
        folder = resolve_pretrained_folder(
            pretrained_model_name_or_path,
            (CONFIG_NAME, WEIGHTS_NAME, ID_MAPS_NAME),
            artifact="CollaborativeModel",
            revision=revision,
            cache_dir=cache_dir,
            token=token,
            local_files_only=local_files_only,
        )
        config_dict = load_json(folder / CONFIG_NAME, "collaborative model config")
        if config_dict.get("model_type") != CollaborativeConfig.model_type:
            raise ValueError(
                f"{folder / CONFIG_NAME} has model_type={config_dict.get('model_type')!r}, expected "
                f"{CollaborativeConfig.model_type!r}; point to a folder saved by CollaborativeModel.save_pretrained."
            )
        check_artifact_version(config_dict.get("tokenrec_hf_version"), f"CollaborativeModel at {folder}")
        # AutoModel passes the config it has already read; the folder's own config is the one checked here.
        kwargs.pop("config", None)
        config = CollaborativeConfig.from_dict(config_dict)
        id_maps = load_json(folder / ID_MAPS_NAME, "collaborative id map")
        _check_id_maps(id_maps, config, folder / ID_MAPS_NAME)
        _check_weights(folder / WEIGHTS_NAME, config)

        model = super().from_pretrained(folder, *args, config=config, **kwargs)
        model.user_ids = [str(value) for value in id_maps["user_ids"]]
        model.item_ids = [str(value) for value in id_maps["item_ids"]]
        return model


def _check_id_maps(id_maps: object, config: CollaborativeConfig, path: Path) -> None:
    if not isinstance(id_maps, dict) or not {"user_ids", "item_ids"} <= set(id_maps):
        raise ValueError(f"{path} must be a JSON object with 'user_ids' and 'item_ids' lists; save the model again.")
    for key, expected in (("user_ids", config.num_users), ("item_ids", config.num_items)):
        if not isinstance(id_maps[key], list) or len(id_maps[key]) != expected:
            found = len(id_maps[key]) if isinstance(id_maps[key], list) else type(id_maps[key]).__name__
            raise ValueError(f"{path} has {found} {key} but the config expects {expected}; save the model again.")


def _expected_shapes(config: CollaborativeConfig) -> dict[str, tuple[int, ...]]:
    shapes = {
        "user_embedding.weight": (config.num_users, config.embedding_dim),
        "item_embedding.weight": (config.num_items, config.embedding_dim),
    }
    if config.architecture == "lightgcn":
        shapes["user_layers"] = (config.num_layers + 1, config.num_users, config.embedding_dim)
        shapes["item_layers"] = (config.num_layers + 1, config.num_items, config.embedding_dim)
        shapes["user_degrees"] = (config.num_users,)
        shapes["item_degrees"] = (config.num_items,)
    return shapes


def _check_weights(path: Path, config: CollaborativeConfig) -> None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            shapes = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
    except Exception as error:  # safetensors raises its own error types for truncated or garbled headers
        raise ValueError(
            f"{path} is not a readable safetensors file ({type(error).__name__}: {error}). The file is corrupted: "
            "save the model again with `save_pretrained`."
        ) from error
    for name, expected in _expected_shapes(config).items():
        if name not in shapes:
            raise ValueError(f"{path} lacks the tensor {name!r}; save the model again with `save_pretrained`.")
        if shapes[name] != expected:
            raise ValueError(
                f"{path} stores {name!r} with shape {list(shapes[name])} but the config expects {list(expected)}; "
                "the weights and config.json come from different models."
            )


def sample_negatives(
    rows: torch.Tensor, observed_keys: torch.Tensor, num_candidates: int, generator: torch.Generator
) -> torch.Tensor:
    """Draw one candidate per row uniformly from `[0, num_candidates)` outside that row's observed set.

    Args:
        rows: `LongTensor[B]` owner (user) index of each draw.
        observed_keys: Sorted unique `row * num_candidates + candidate` keys of the observed pairs.
        num_candidates: Size of the candidate table (items, or users for item fold-in).
        generator: The random generator; the draws depend only on its state.

    Returns:
        `LongTensor[B]` of candidates, each unobserved for its row.
    """
    negatives = torch.randint(num_candidates, rows.shape, generator=generator)
    pending = torch.arange(rows.shape[0])
    while pending.numel():
        keys = rows[pending] * num_candidates + negatives[pending]
        position = torch.searchsorted(observed_keys, keys).clamp(max=max(observed_keys.numel() - 1, 0))
        collided = (
            observed_keys[position] == keys if observed_keys.numel() else torch.zeros_like(keys, dtype=torch.bool)
        )
        pending = pending[collided]
        if pending.numel():
            negatives[pending] = torch.randint(num_candidates, pending.shape, generator=generator)
    return negatives


__all__ = [
    "CollaborativeModel",
    "CollaborativeOutput",
    "CollaborativePreTrainedModel",
    "InteractionGraph",
    "LightGCNPropagation",
    "build_interaction_graph",
    "propagate_autograd",
    "propagate_layers",
    "sample_negatives",
]
