"""Data layer: IDX files, the dataset registry, and image preparation."""
