"""Orchestration: one function per stage, the local run, and the Kubeflow pipelines."""
