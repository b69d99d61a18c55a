"""bagging_app: federated gradient-boosted trees with xgboost, bagged by the server."""
