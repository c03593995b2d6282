"""The server's history: message store, export import, lore scoring and the weighted lore index."""
