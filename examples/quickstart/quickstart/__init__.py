"""quickstart: federated learning on scikit-learn's digits with three skewed clients."""
