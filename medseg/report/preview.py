"""Augmentation preview: a grid of training cases after the training transforms, mask outline drawn.

Each row is one case; each column one random draw of ``transforms.train``. If the outline does not
sit on the lesion, image and mask are not moving together.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.chains import train_transforms
from medseg.config.models import PipelineConfig
from medseg.io.atomic import atomic_path
from medseg.io.case import Case
from medseg.io.overlay import draw_overlay
from medseg.report.overlays import display_slice
from medseg.transforms.labels import foreground


def preview_grid(cfg: PipelineConfig, cases: list[Case], path: Path) -> Path:
    """Write the augmentation preview of ``cases`` to ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = cases[: cfg.preview.n_cases]
    n_draws = cfg.preview.n_draws
    chain = train_transforms(cfg.data, cfg.transforms)
    chain.set_random_state(seed=cfg.seed)
    fig, axes = plt.subplots(len(chosen), n_draws, figsize=(2.6 * n_draws, 2.2 * len(chosen)), squeeze=False)
    for i, case in enumerate(chosen):
        for j in range(n_draws):
            item = chain(case.item())
            if isinstance(item, list):  # patches: show the first
                item = item[0]
            image = np.asarray(item["image"], dtype=np.float32)
            label = foreground(np.asarray(item["label"])[0], cfg.data.ignore_value)
            img2d, ref2d, _ = display_slice(image, label, label)
            if img2d.ndim == 3 and img2d.shape[-1] not in (1, 3):
                img2d = img2d[..., 0]
            axes[i, j].imshow(draw_overlay(img2d, ref2d, None))
            axes[i, j].set_axis_off()
            axes[i, j].set_title(f"{case.id} #{j + 1}", fontsize=7)
    fig.suptitle("training transforms: image with mask outline", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return path
