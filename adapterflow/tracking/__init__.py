"""MLflow runs and names, the metric buffer for tracking outages, and the redaction everything logged passes. May
import: core, schemas, storage, data."""
