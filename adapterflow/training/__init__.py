"""Training: the loop over Trainer, callbacks, checkpoints, distributed launches, the sweep probe and Optuna. May
import the library packages below it: core, schemas, storage, data, models, orchestration, tokenization, methods,
tracking, evaluation."""
