"""autolora: automated robust fine-tuning (AutoLoRa, ICLR 2024) for PyTorch image models."""

__version__ = "0.1.0"
