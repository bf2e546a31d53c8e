"""Cross-cutting Lightning callbacks (unfreezing schedule, gradient-reversal schedule, ...)."""
