"""Strategies: how pretrained weights are adapted (what trains, at which learning rate)."""
