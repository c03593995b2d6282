"""LoRA training of the character's voice on the server's history (see README.md)."""
