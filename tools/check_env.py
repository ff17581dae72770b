"""Check what this machine will really run: each kernel backend, once, against the reference.

The code is `libs/commands/check_env.py` (also installed as the console script
`tal-check-env`); run `python tools/check_env.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.check_env import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
