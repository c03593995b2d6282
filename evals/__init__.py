"""RAGAS evals of reply relevance (see README.md)."""
