"""Detect actions in new videos from their feature files alone (no annotation JSON needed).

The code is `libs/commands/infer.py` (also installed as the console script
`tal-infer`); run `python tools/infer.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.infer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
