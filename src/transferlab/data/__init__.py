"""Datamodules: labelled source, optional unlabelled target, stratified subsampling by size."""
