"""privgan.attacks."""
