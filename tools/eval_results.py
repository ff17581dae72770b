"""Evaluate an ActivityNet results JSON against an annotation JSON (ActivityNet detection mAP).

The code is `libs/commands/eval_results.py` (also installed as the console script
`tal-eval-results`); run `python tools/eval_results.py --help` for its options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, when not pip-installed

from libs.commands.eval_results import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
