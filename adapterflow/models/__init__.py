"""Base models: resolving, materialising and loading them."""
