"""From rows to token batches: chat templates, response-only labels, length statistics, other task types, token
datasets, padding and packing collators. May import: core, schemas, storage, data."""
