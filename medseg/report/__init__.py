"""Reports of a run folder: the cross-validation summary and pages, overlays, the augmentation preview."""
