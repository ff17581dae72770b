"""Core: config schema, registries, typed structures and segment math."""
