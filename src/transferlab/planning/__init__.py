"""Memory planning from the architecture alone: meta-device models, byte accounting, activation tracing."""
