"""Scoring models: stored adapters loaded for scoring, loss and perplexity, classification and generation metrics,
forgetting, base/champion/candidate comparison, plots, frozen eval sets. May import: core, schemas, storage, data,
models, tokenization, methods, tracking."""
