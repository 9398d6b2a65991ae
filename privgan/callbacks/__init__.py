"""privgan.callbacks."""
