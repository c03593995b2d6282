"""The reply chain (LCEL) and its stages, and the model factory."""
