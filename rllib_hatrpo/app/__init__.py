"""The application: the `rllib-hatrpo` command (`cli`), experiment files, the training loop
with its run directory, Tune searches, evaluation of checkpoints and wandb logging."""
