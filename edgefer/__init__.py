"""edgefer: facial emotion recognition with per-emotion intensity, for edge devices."""

__version__ = "0.1.0"
