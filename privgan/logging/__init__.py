"""privgan.logging."""
