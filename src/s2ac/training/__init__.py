"""Training: the Pix2Pix fit loop with checkpoints and MLflow tracking, and the Optuna sweep."""
