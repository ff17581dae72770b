"""Train a temporal action detector, evaluate its EMA weights, keep everything in one run folder.

The code is `libs/commands/train.py` (also installed as the console script `tal-train`); run
`python train.py --help` for its options.
"""

import sys

from libs.commands.train import main

if __name__ == "__main__":
    sys.exit(main())
