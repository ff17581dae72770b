"""Write synthetic per-video features for an ActivityNet-style annotation JSON.

The code is `libs/commands/make_synthetic.py` (also installed as the console script
`tal-make-synthetic`); run `python tools/make_synthetic.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.make_synthetic import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
