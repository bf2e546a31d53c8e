"""Domain-adaptation objectives on features (one module per method)."""
