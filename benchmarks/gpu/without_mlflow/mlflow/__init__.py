"""Stands in the import path of benchmarks/gpu/run.sh where MLflow would be: the GPU machine has no
MLflow (it is not carried), and the run keeps tracking off. Importing it fails at once, so a dry run
on a machine that has MLflow fails, as the GPU run would, on any code path that still needs it."""

raise ImportError(
    "mlflow is not on the GPU machine: benchmarks/gpu/run.sh runs with tracking.enabled=false, "
    "and this code path imports MLflow all the same"
)
