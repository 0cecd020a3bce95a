"""MLflow: the run tracker of ``medseg run``, downloads of logged models, and ``medseg compare``."""
