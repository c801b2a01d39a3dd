"""Training a compiled spec: ``nndsl train`` and :func:`nndsl.train.run.train`.

One concern per module: ``config`` (the train section and overrides → a checked configuration),
``data``, ``augment``, ``losses``, ``optim`` / ``extra_optim``, ``schedules``, ``metrics``,
``loop`` (the training loop), ``checkpoint`` (run folder, checkpoints, state without pickle),
``plots``, ``console`` (progress and tables) and ``distributed`` (DDP under torchrun).
Importing this package does not import PyTorch.
"""
