"""logreg_app: federated logistic regression on the wine data set, with scikit-learn."""
