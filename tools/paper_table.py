"""Our runs next to the paper's table: best and last epoch, and the difference to the paper.

The code is `libs/commands/paper_table.py` (also installed as the console script
`tal-paper-table`); run `python tools/paper_table.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.paper_table import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
