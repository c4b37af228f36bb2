"""The detector as an MLflow pyfunc: `predict` takes rows of `id`/`text` and returns score records.

Logged as MLflow "models from code": MLflow runs this file when it loads the model, and `set_model` names the
model object, so nothing is pickled."""
from __future__ import annotations

import mlflow.models
import mlflow.pyfunc


class UnspinModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from inference.model.detector import Detector

        self.detector = Detector.from_dir(context.artifacts["detector"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        if isinstance(model_input, dict):
            model_input = pd.DataFrame(model_input)
        if not isinstance(model_input, pd.DataFrame):
            model_input = pd.DataFrame(list(model_input))
        texts = model_input["text"].tolist() if "text" in model_input else [None] * len(model_input)
        ids = model_input["id"].tolist() if "id" in model_input else list(range(len(model_input)))
        # a missing id (None/NaN) is keyed by the row's position, so every row still gets its record
        ids = [str(i) if isinstance(i, (str, int)) and str(i).strip() else str(k) for k, i in enumerate(ids)]
        return self.detector.score(texts, ids=ids)


mlflow.models.set_model(UnspinModel())
