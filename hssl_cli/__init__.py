"""hssl: self-supervised learning with equivariant networks."""

__version__ = "0.1.0"
