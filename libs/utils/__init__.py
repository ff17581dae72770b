"""Small helpers shared by the scripts and the engine: logging, seeding, atomic file writes."""
