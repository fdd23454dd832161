"""adapterflow: a declarative fine-tuning workflow for domain adapters."""

__version__ = "0.1.0"
