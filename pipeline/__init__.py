"""TaI-Adapter: multi-label image classifiers trained from text alone."""

__version__ = "0.1.0"


def load_classifier(path, device: str = "auto", clip_model: str | None = None, threshold: float | None = None):
    """A trained classifier from an exported folder (`tai export`, no pickle) or an adapter bundle, with
    `.predict(images)` and `.scores(pixels)`: see `pipeline.shipping.classifier`. Imported on call, so importing
    `pipeline` stays free of torch."""
    from .shipping.classifier import DEFAULT_THRESHOLD
    from .shipping.classifier import load_classifier as load

    return load(path, device, clip_model, DEFAULT_THRESHOLD if threshold is None else threshold)
