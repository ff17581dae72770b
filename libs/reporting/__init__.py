"""Reports built from finished runs: the paper comparison of tools/paper_table.py."""
