"""unspin inference: `from inference import Detector; Detector.load(uri_or_path).score(texts)`."""


def __getattr__(name):
    # Imported lazily so `python -m inference.score --help` does not pay for torch.
    if name == "Detector":
        from inference.model.detector import Detector

        return Detector
    raise AttributeError(name)
