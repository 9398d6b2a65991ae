"""privgan.data."""
