"""MLflow: tracking conventions, the model registry and the quality gate."""
