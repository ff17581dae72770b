"""Train + evaluate one config with several seeds and report mean ± std of the mAP per tIoU.

The code is `libs/commands/multi_seed.py` (also installed as the console script
`tal-multi-seed`); run `python tools/multi_seed.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.multi_seed import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
