"""Train one transfer-learning run (or a sweep with -m). See README.md.

python train.py                                      # offline default job
python train.py strategy=partial data=mnist_to_digits
python train.py -m strategy=feature_extraction,full data.train_per_class=5,50 seed=0,1,2
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig):
    from transferlab.train import main as run_main  # lazy: keeps --help and config errors fast

    return run_main(cfg)


if __name__ == "__main__":
    try:
        main()
    except SystemExit as e:
        if e.code == 1:  # Hydra refused the command line: suggest the key a mistyped override meant
            import sys

            from transferlab.validate import override_hints

            for line in override_hints(sys.argv[1:]):
                print(line, file=sys.stderr)
        raise
