"""Reading, ranking, scoring and showing the results of dvae-tune searches.

Every module works on experiment folders as Ray Tune leaves them on disk (one folder per
trial, the Optuna study in optuna.db) and never starts Ray:

- `analysis.results`: the trials and their learning curves as pandas frames
- `analysis.leaderboard`: the best trial and the top configurations of each model
- `analysis.evaluate`: test-set scores of the top checkpoints, as the DVAE review's table
- `analysis.plots`: learning curves, hyperparameter effects, ASHA rungs, importances
- `analysis.report`: all of it in one self-contained HTML page, with audio

Each module is also a script: ``python -m analysis.<module> --help``.
"""
