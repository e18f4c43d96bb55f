"""The `ranking` metric: HR@K and NDCG@K for leave-one-out recommendation."""
