"""Hyperparameter search on Optuna (`skinlesion search`): the space and the study."""
