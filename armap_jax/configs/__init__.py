"""Packaged ml_collections configs (so console scripts work when installed)."""
