"""K-means with k-means++ seeding, used to initialize MQ-Tokenizer codebooks from encoder outputs."""

from __future__ import annotations

import torch


def squared_distances(points: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """Compute squared Euclidean distances between every point [N, d] and every center [M, d], as [N, M]."""
    distances = points.pow(2).sum(-1, keepdim=True) - 2 * points @ centers.T + centers.pow(2).sum(-1).unsqueeze(0)
    return distances.clamp_min_(0.0)


def kmeans_plus_plus(
    points: torch.Tensor, num_clusters: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Pick `num_clusters` starting centers from `points` [N, d] by k-means++ seeding.

    When there are fewer distinct points than clusters, the remaining centers repeat sampled points; Lloyd's
    iterations then leave them empty and `kmeans` re-seeds them.
    """
    num_points = points.shape[0]
    first = torch.randint(num_points, (1,), generator=generator, device=points.device)
    centers = [points[first]]
    closest = squared_distances(points, centers[0]).squeeze(1)

    for _ in range(1, num_clusters):
        total = closest.sum()
        if total <= 0:
            index = torch.randint(num_points, (1,), generator=generator, device=points.device)
        else:
            index = torch.multinomial(closest / total, 1, generator=generator)
        centers.append(points[index])
        closest = torch.minimum(closest, squared_distances(points, points[index]).squeeze(1))

    return torch.cat(centers, dim=0)


@torch.no_grad()
def kmeans(
    points: torch.Tensor, num_clusters: int, num_iterations: int = 25, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Cluster `points` [N, d] into `num_clusters` centers [num_clusters, d] with Lloyd's algorithm.

    Args:
        points: The vectors to cluster.
        num_clusters: The number of centers to return.
        num_iterations: Lloyd iterations after k-means++ seeding.
        generator: Random generator for the seeding and for re-seeding empty clusters.

    Returns:
        The cluster centers. A cluster that ends up empty is re-seeded with the point farthest from its center, so
        every center describes at least one point whenever N >= num_clusters.

    Raises:
        ValueError: When `points` is empty or not two-dimensional.
    """
    if points.ndim != 2 or points.shape[0] == 0:
        raise ValueError(f"kmeans expects a non-empty [N, d] tensor, got shape {tuple(points.shape)}.")
    points = points.float()
    centers = kmeans_plus_plus(points, num_clusters, generator=generator)

    for _ in range(num_iterations):
        distances = squared_distances(points, centers)
        assignment = distances.argmin(dim=1)
        counts = torch.bincount(assignment, minlength=num_clusters).to(points.dtype)
        sums = torch.zeros_like(centers).index_add_(0, assignment, points)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled].unsqueeze(1)

        empty = (~filled).nonzero().flatten()
        if len(empty) > 0:
            # Re-seed empty clusters with the points worst served by their current center.
            error = distances.gather(1, assignment.unsqueeze(1)).squeeze(1)
            farthest = error.topk(min(len(empty), points.shape[0])).indices
            centers[empty[: len(farthest)]] = points[farthest]

    return centers
