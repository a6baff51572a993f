"""`python -m train --data NPZ --out DIR [--epochs N] [--resume]`: the recipe without the CLI package.

`edgefer train` is the same call; this entry point exists so a long run can be started from a
source checkout before the package is installed.
"""

import argparse
import logging
from pathlib import Path

from edgefer.data import load_faces

from .config import TrainConfig
from .recipe import train

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--resume", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    train(load_faces(a.data), Path(a.out), TrainConfig(epochs=a.epochs, threads=a.threads), resume=a.resume,
          progress=False)
