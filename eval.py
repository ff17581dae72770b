"""Evaluate a checkpoint (ours or a published ActionFormer / video-mamba-suite `.pth.tar`).

The code is `libs/commands/eval.py` (also installed as the console script `tal-eval`); run
`python eval.py --help` for its options.
"""

import sys

from libs.commands.eval import main

if __name__ == "__main__":
    sys.exit(main())
