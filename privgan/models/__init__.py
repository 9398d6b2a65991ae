"""privgan.models."""
