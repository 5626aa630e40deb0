"""TaI-Adapter: multi-label image classifiers trained from text alone."""

__version__ = "0.1.0"
