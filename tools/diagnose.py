"""Diagnose a detector's errors as DETAD does (false positives, false negatives, sensitivity).

The code is `libs/commands/diagnose.py` (also installed as the console script
`tal-diagnose`); run `python tools/diagnose.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.diagnose import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
