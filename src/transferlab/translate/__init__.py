"""Pixel-level domain adaptation: image-to-image translators run before the classifier trains."""
