"""Evaluation: metrics, the physics and linear baselines, the comparison, its report and figures."""
