"""The character bot's entry points, Discord layer and composition root (`python -m app ...`)."""
