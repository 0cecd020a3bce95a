"""A whole study: the stages before training (:mod:`~medseg.pipeline.stages`), one fold
(:mod:`~medseg.pipeline.fold`) and the run that ties them together (:mod:`~medseg.pipeline.run`)."""

from medseg.pipeline.run import run
from medseg.pipeline.stages import ingest

__all__ = ["ingest", "run"]
