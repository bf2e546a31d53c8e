"""Backbones: pretrained networks exposing one contract (see `base.Backbone`)."""
