"""quickstart-xgboost: A Flower / XGBoost app."""
