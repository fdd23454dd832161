"""MLflow "models from code" entry point of registered adapters.

MLflow copies this file into every registered model and runs it on load (no pickled objects).
"""

from mlflow.models import set_model

from adapterflow.registry.pyfunc import AdapterModel

set_model(AdapterModel())
