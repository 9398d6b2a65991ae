"""privgan.modules."""
