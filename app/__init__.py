"""The character bot's entry points, settings and composition root (`python -m app ...`)."""
