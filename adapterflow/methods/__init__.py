"""Fine-tuning methods: building the trainable model, saving and loading what it trains, memory estimates. May
import: core, schemas, storage, models."""
