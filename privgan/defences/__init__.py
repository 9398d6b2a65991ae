"""privgan.defences."""
