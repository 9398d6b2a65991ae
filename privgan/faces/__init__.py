"""privgan.faces."""
