"""Training: the Trainer subclass, its callbacks, the run directory and the train pipeline."""
