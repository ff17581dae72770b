"""The parts of tools/prepare_features.py: `archive` (join + extract multi-part archives) and
`verify` (check a feature folder against an annotation JSON with the library's readers)."""
