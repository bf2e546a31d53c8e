"""Train one transfer-learning run (or a sweep with -m). See README.md.

python train.py                                      # offline default job
python train.py strategy=partial data=mnist_to_digits
python train.py -m strategy=feature_extraction,full data.train_per_class=5,50 seed=0,1,2

The same command is installed as `transferlab-train` (runs from any folder; the configs ship in
src/transferlab/conf).
"""

from transferlab.cli import train

if __name__ == "__main__":
    train()
