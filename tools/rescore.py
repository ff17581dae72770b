"""Redo post-processing and evaluation from saved raw predictions, without the model.

The code is `libs/commands/rescore.py` (also installed as the console script
`tal-rescore`); run `python tools/rescore.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.rescore import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
