"""``medseg plan``: a study that configures itself from the data and the compute budget.

:mod:`~medseg.plan.fingerprint` measures the data, :mod:`~medseg.plan.rules` turns the fingerprint
into settings (nnU-Net's rules: target spacing, normalisation, topology, patch and batch size),
:mod:`~medseg.plan.calibrate` measures memory and seconds per step on the device, and
:mod:`~medseg.plan.budget` fits the study into the time the user has; :mod:`~medseg.plan.write`
writes the pipeline file with each value's reason beside it.
"""
