"""privgan: train private generative and split models and watch them leak while they train."""

__version__ = "0.1.0"
