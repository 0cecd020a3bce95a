"""A held-out picture too large for the memory there is: one line naming the case and what to do,
not "unexpected MemoryError" after training. The held-out stage runs in a fresh process whose
address space is capped a little above what it maps once the model is built."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from ..conftest import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")

HELD_OUT = """
import resource, sys
from pathlib import Path
import torch
from medseg.config.load import bind_components, validate_dict
from medseg.errors import MedsegError
from medseg.io.checkpoint import save_checkpoint
from medseg.pipeline.fold import evaluate_fold
from medseg.pipeline.stages import ingest
from medseg.registry import build_network
from medseg.run_dir import RunDir
from medseg.train.loop import FoldResult

torch.set_num_threads(1)
data, out, cap_mb = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
cases = [{"id": "BIG", "image": "BIG.jpg", "label": "BIG_segmentation.png"}]
cfg = bind_components(validate_dict({
    "name": "large", "output_dir": str(out), "split": {"n_folds": 2},
    "data": {"root": str(data), "layout": "table", "cases": cases, "metadata": None},
    "transforms": {"spatial_size": [32, 32]},
    "model": {"name": "UNet", "args": {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}},
}))
run = RunDir(out)
run.root.mkdir(parents=True)
found, _ = ingest(cfg, run.root)
fold = run.fold(0)
save_checkpoint(fold.best, {"model": build_network(cfg.network).state_dict()})
build_network(cfg.network)(torch.zeros(1, 3, 32, 32))  # the first forward pass maps its own libraries
mapped = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + cap_mb * 2**20, resource.RLIM_INFINITY))
try:
    evaluate_fold(cfg, fold, found, FoldResult(0, float("nan"), 0, fold.best, fold.best, []))
except MedsegError as err:
    print(err)
    sys.exit(7)
print("fitted")
"""


def _picture(root: Path, height: int, width: int) -> Path:
    root.mkdir()
    picture = Image.new("RGB", (width, height), (200, 170, 150))
    mask = Image.new("L", (width, height), 0)
    box = (width // 4, height // 4, 3 * width // 4, 3 * height // 4)
    ImageDraw.Draw(picture).ellipse(box, fill=(90, 50, 40))
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    picture.save(root / "BIG.jpg", quality=90)
    mask.save(root / "BIG_segmentation.png")
    return root


def _held_out(data: Path, out: Path, cap_mb: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-c", HELD_OUT, str(data), str(out), str(cap_mb)]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.slow  # two fresh processes and a 12-million-pixel picture: about 30 s
def test_a_held_out_picture_too_large_for_memory_is_named_with_what_to_do(tmp_path):
    data = _picture(tmp_path / "d", 3000, 4000)  # 12 million pixels: 144 MB as float32 RGB
    capped = _held_out(data, tmp_path / "capped", 200)
    assert capped.returncode == 7, capped.stdout + capped.stderr[-3000:]
    line = capped.stdout.strip().splitlines()[-1]
    assert "held-out case BIG: out of memory" in line, line
    assert "data.max_image_pixels" in line and "free memory" in line
    assert not list((tmp_path / "capped" / "fold_0").glob("predictions/*.png.*"))  # nothing half-written
    roomy = _held_out(data, tmp_path / "roomy", 4000)
    assert roomy.returncode == 0 and roomy.stdout.strip().endswith("fitted"), roomy.stderr[-3000:]
    assert (tmp_path / "roomy" / "fold_0" / "predictions" / "BIG.png").is_file()
