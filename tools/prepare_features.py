"""Get feature archives onto disk and check a feature folder before training on it.

The code is `libs/commands/prepare_features.py` (also installed as the console script
`tal-prepare-features`); run `python tools/prepare_features.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.prepare_features import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
