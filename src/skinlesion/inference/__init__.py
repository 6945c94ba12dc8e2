"""Model bundles and prediction."""
