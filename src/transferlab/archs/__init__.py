"""Architecture configs (config.json-level numbers) shipped for offline planning: `transferlab.planning.arch`."""
