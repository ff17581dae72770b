"""Pictures of detections: per-video timelines, and precision-recall / per-class AP charts.

The code is `libs/commands/visualize.py` (also installed as the console script
`tal-visualize`); run `python tools/visualize.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.visualize import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
