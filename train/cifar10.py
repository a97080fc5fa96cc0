"""Train or evaluate a keras_lrn model on cifar10: `python train/cifar10.py --model NAME [flags]`.

See `--help` and the README; the logic lives in `keras_lrn.training`.
"""

import sys

from keras_lrn.training.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], dataset="cifar10"))
