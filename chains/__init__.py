"""The reply chain (LCEL) and its stages: memory, preprocess, retrieve, ground, assemble, generate, validate."""
