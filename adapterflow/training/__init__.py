"""Training internals: token datasets, collation, metrics callbacks and the Trainer set-up."""
