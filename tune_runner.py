"""Runs a hyperparameter search over a DVAE search space: ``python tune_runner.py --space vrnn_priors``.

The same command as the installed ``dvae-tune``; see ``--help``, and dvae/runner.py for the code.
"""
import sys

from dvae.runner import main

if __name__ == "__main__":
    sys.exit(main())
