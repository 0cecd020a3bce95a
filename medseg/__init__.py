"""medseg: medical image segmentation studies from one YAML file, built on MONAI."""

__version__ = "0.1.0"
