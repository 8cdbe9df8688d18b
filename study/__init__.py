"""study: distributed hyperparameter studies for liver-tumor segmentation in multi-phase MRI."""

__version__ = "0.1.0"
