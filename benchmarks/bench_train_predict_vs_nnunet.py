"""medseg's DynUNet against nnU-Net 2.8.1's own trainer and predictor, on one nnU-Net data set.

The data set is made by medseg's generator (`medseg.data.synthetic_datasets.mr_case`: two-channel
MR-like volumes, T1 and T2, classes oedema and core) in nnU-Net's raw layout, small enough that
the whole run takes about ten minutes on 2 CPU cores: ``--shape`` for the training cases,
``--test-shape`` for the held-out cases of ``imagesTs`` (larger, so that the sliding window takes
several positions). In one run, printed side by side, nnU-Net named as the baseline:

1. the plans: nnU-Net's ``3d_fullres`` (`nnunetv2` planned and preprocessed here, through
   `bench_plan_vs_nnunet.nnunet_plan`) and the pipeline file `medseg plan` writes (no budget, 8 GB);
2. CPU training, topologies matched: medseg trains the DynUNet of its plan with patch, batch,
   kernels, strides, features and deep-supervision heads set to nnU-Net's (axes reversed: nnU-Net
   lists z, y, x; medseg x, y, z); whether its own plan already had them is printed. nnU-Net runs
   `nnUNetTrainer` (its data loader, augmentation, DC+CE loss, SGD) on the CPU, medseg its own
   loader (`make_loaders`), loss, optimiser and step (`train_epoch`). Each side runs in a process of
   its own that stays up; after ``--warmup`` untimed iterations they take turns epoch by epoch for
   ``--epochs`` epochs of ``--iterations`` iterations each (the same count on both sides; an
   nnU-Net epoch is 250 iterations, far too many for this machine), each iteration timed (fetching
   the batch, then the update). Printed: the median epoch time and its ratio medseg / nnU-Net per
   epoch, the median iteration with its fetch and update parts, and samples per second;
3. predicting the held-out cases: `nnUNetv2_predict` (fold 0, ``-step_size 0.5``, Gaussian,
   ``--disable_tta``, its default ``-npp 3 -nps 3``) against `medseg predict` (``--workers 0``: one
   process; overlap 0.5, Gaussian, ``infer.tta_flips: false``) and, as a second medseg row, its CPU
   default (one single-threaded process per core). Each uses the weights its side trained in step 2
   (the same number of iterations, the same topology). Whole commands are timed (start-up and model
   loading included), in alternating order for ``--rounds`` rounds; seconds per case are the
   median command time over the number of cases;
4. Dice of each side's predictions of the held-out cases against ``labelsTs``, per class and their
   mean, scored by the same code (`medseg.evaluate.postprocessing.dice`).

Both sides use ``--threads`` torch threads (default 2, this machine's cores): set in the training
processes, and through ``OMP_NUM_THREADS`` for `medseg predict`; `nnUNetv2_predict` sets
``cpu_count()`` itself, which the run prints. nnU-Net's augmentation runs in its training process
(``nnUNet_n_proc_DA=0``, its single-threaded augmenter) as medseg's loader does on a CPU: nnU-Net's
background workers would keep filling their six-batch queue while medseg takes its turn. nnU-Net's
variables (``nnUNet_raw``, ``nnUNet_preprocessed``, ``nnUNet_results``) point at temporary folders
and are set only for its processes.

Needs the `plan-compare` extra (`pip install -e '.[plan-compare]'`, nnunetv2==2.8.1); skips otherwise.

    python benchmarks/bench_train_predict_vs_nnunet.py [--shape 48,48,16] [--test-shape 96,96,16]
        [--train-cases 8] [--test-cases 3] [--epochs 3] [--iterations 4] [--warmup 1]
        [--rounds 2] [--threads 2] [--json FILE] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    import numpy as np

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
IDENT, NAME = 601, "Dataset601_MRBench"
IN_PROCESS_DA = {"nnUNet_n_proc_DA": "0"}  # nnU-Net's training augmentation in its own process
MARK = "BENCH "  # the workers' answers, among whatever else the libraries print
HELD_OUT, ONE_CASE = "imagesTs", "imagesTsOne"  # the held-out cases; the first of them alone
CLASSES = ("oedema", "core")  # label values 1 and 2


# ---------------------------------------------------------------------------------------- data set


def write_dataset(root: Path, shape: list[int], test_shape: list[int], n_train: int, n_test: int) -> None:
    """Two-channel MR-like cases of medseg's generator in nnU-Net's raw layout, with the
    `dataset.json` of `write_mr_nnunet`; held-out cases (``imagesTs``, ``labelsTs``) of
    ``test_shape``."""
    import numpy as np

    from medseg.data.synthetic_datasets import MR_SPACING, mr_case
    from medseg.io.nifti import write_nifti

    rng = np.random.default_rng(0)
    affine = np.diag([*MR_SPACING, 1.0])
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(n_train + n_test):
        split, size = ("Tr", shape) if i < n_train else ("Ts", test_shape)
        images, label = mr_case(rng, (size[0], size[1], size[2]))
        for c in range(2):
            write_nifti(root / f"images{split}" / f"mr_{i:03d}_{c:04d}.nii.gz", images[c], affine)
        write_nifti(root / f"labels{split}" / f"mr_{i:03d}.nii.gz", label, affine)
    (root / ONE_CASE).mkdir(exist_ok=True)
    for c in range(2):
        shutil.copy(root / HELD_OUT / f"mr_{n_train:03d}_{c:04d}.nii.gz", root / ONE_CASE)
    spec = {
        "channel_names": {"0": "T1", "1": "T2"},
        "labels": {"background": 0, **{c: v for v, c in enumerate(CLASSES, start=1)}},
        "numTraining": n_train,
        "file_ending": ".nii.gz",
        "name": root.name,
    }
    (root / "dataset.json").write_text(json.dumps(spec, indent=1))


def nnunet_env(work: Path, threads: int) -> dict[str, str]:
    """The environment of nnU-Net's processes: its three folders under ``work``."""
    env = dict(os.environ) | {"OMP_NUM_THREADS": str(threads)}
    env["nnUNet_def_n_proc"] = str(threads)  # planning and preprocessing processes (default 8)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[name] = str(work / name)
        (work / name).mkdir(parents=True, exist_ok=True)
    return env


def medseg_env(threads: int) -> dict[str, str]:
    """The environment of medseg's processes: no nnU-Net variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_")}
    return env | {"OMP_NUM_THREADS": str(threads)}


# ------------------------------------------------------------------------------------------- plans


def worker_nnunet_plan() -> dict[str, Any]:
    """(In nnU-Net's environment.) Fingerprint, plan and preprocess ``3d_fullres``; the plan."""
    from bench_plan_vs_nnunet import nnunet_plan
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess

    t0 = time.perf_counter()
    plan = nnunet_plan(IDENT, "3d_fullres")
    pre = Path(os.environ["nnUNet_preprocessed"]) / NAME  # noqa: SIM112 (nnU-Net's own name)
    arch = json.loads((pre / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]
    plan["kernels"] = arch["architecture"]["arch_kwargs"]["kernel_sizes"]
    preprocess([IDENT], configurations=("3d_fullres",), num_processes=(2,), show_progress_bar=False)
    plan["seconds"] = time.perf_counter() - t0
    return plan


def medseg_plan(data: Path, out: Path, env: dict[str, str]) -> dict[str, Any]:
    """`medseg plan DATA --device cpu` as a user runs it; its values (axes x, y, z)."""
    from medseg.config.load import load_pipeline

    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "medseg", "plan", str(data), "--device", "cpu", "--out", str(out)]
    _checked(subprocess.run(cmd, env=env, capture_output=True, text=True), "medseg plan")
    seconds = time.perf_counter() - t0
    cfg = load_pipeline(out)
    args = cfg.model.args
    return {
        "spacing": [round(float(s), 4) for s in cfg.transforms.spacing or []],
        "patch": list(cfg.transforms.patch_size or []),
        "batch": cfg.train.batch_size
        * (cfg.transforms.patches_per_image if cfg.transforms.patch_size else 1),
        "kernels": [list(k) for k in args["kernel_size"]],
        "strides": [list(s) for s in args["strides"]],
        "features": list(args["filters"]),
        "heads": 1 + int(args["deep_supr_num"]) if args.get("deep_supervision") else 1,
        "normalisation": [next(iter(p)) for p in cfg.transforms.preprocess],
        "network": cfg.model.name,
        "seconds": seconds,
    }


def in_medseg_axes(plan: dict[str, Any]) -> dict[str, Any]:
    """nnU-Net's plan with every per-axis value reversed (z, y, x -> x, y, z)."""
    out = dict(plan)
    for key in ("spacing", "median_shape", "patch"):
        out[key] = list(reversed(plan[key]))
    for key in ("strides", "kernels"):
        out[key] = [list(reversed(v)) for v in plan[key]]
    out["heads"] = len(plan["features"]) - 1  # a segmentation output per decoder level (the last weight 0)
    out["network"] = "PlainConvUNet"
    return out


def topology_overrides(theirs: dict[str, Any]) -> list[str]:
    """``--set`` items that give medseg's DynUNet nnU-Net's patch, batch and layers."""
    from medseg.plan.rules import cases_per_step

    dump = json.dumps
    strides = theirs["strides"]
    cases, per_case = cases_per_step(theirs["batch"])  # a step of medseg's loader: cases x patches
    return [
        f"transforms.spacing={dump(theirs['spacing'])}",
        f"transforms.patch_size={dump(theirs['patch'])}",
        f"infer.roi_size={dump(theirs['patch'])}",
        f"train.batch_size={cases}",
        f"transforms.patches_per_image={per_case}",
        "model.name=DynUNet",
        f"model.args.kernel_size={dump(theirs['kernels'])}",
        f"model.args.strides={dump(strides)}",
        f"model.args.upsample_kernel_size={dump(strides[1:])}",
        f"model.args.filters={dump(theirs['features'])}",
        "model.args.deep_supervision=true",
        f"model.args.deep_supr_num={theirs['heads'] - 1}",
        "train.device=cpu",
        "infer.overlap=0.5",
        "infer.mode=gaussian",
        "infer.tta_flips=false",
    ]


def print_plans(theirs: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """The two plans side by side (nnU-Net's axes reversed); the keys where they differ."""
    keys = ("spacing", "patch", "batch", "kernels", "strides", "features", "heads", "normalisation")
    print(f"\n### Plans ({NAME}; nnU-Net's per-axis values reversed to x, y, z)\n")
    print("| | nnU-Net 2.8.1 3d_fullres (baseline) | medseg plan |\n|---|---|---|")
    for key in ("network", "median_shape", *keys):
        print(f"| {key} | {theirs.get(key)} | {ours.get(key, '-')} |")
    print(f"| planning seconds | {theirs['seconds']:.1f} (with preprocessing) | {ours['seconds']:.1f} |")
    differ = [k for k in keys[:-1] if theirs[k] != ours[k]]
    print(f"\nmedseg trains with nnU-Net's topology; its own plan differs in: {differ or 'nothing'}")
    return differ


# -------------------------------------------------------------------------- training step workers


def nnunet_stepper() -> tuple[Any, Any, int]:
    """(In nnU-Net's environment.) nnUNetTrainer on fold 0, on the CPU: (step, save, batch)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(IDENT), "3d_fullres", 0, device=torch.device("cpu"))
    trainer.on_train_start()  # data loaders, unpacking, plans copied beside the results
    trainer.on_train_epoch_start()

    def step() -> tuple[float, float]:
        t0 = time.perf_counter()
        batch = next(trainer.dataloader_train)
        t1 = time.perf_counter()
        trainer.train_step(batch)
        return t1 - t0, time.perf_counter() - t1

    def save(_: Path) -> None:
        trainer.save_checkpoint(str(Path(trainer.output_folder) / "checkpoint_final.pth"))

    return step, save, trainer.batch_size


def medseg_stepper(plan: Path, overrides: list[str], run: Path) -> tuple[Any, Any, int]:
    """medseg's loader and training step for ``plan`` with ``overrides``: (step, save, batch)."""
    import torch

    from medseg.config.load import dump_config, load_pipeline
    from medseg.data.datalist import build_datalist
    from medseg.pipeline.stages import resolve_channel_files, resolve_statistics
    from medseg.registry import build_inferer
    from medseg.run_dir import RunDir
    from medseg.train.distributed import DistInfo
    from medseg.train.epoch import EpochContext, train_epoch
    from medseg.train.loaders import make_loaders
    from medseg.train.losses import training_loss
    from medseg.train.state import new_state, save_best
    from medseg.train.step_options import StepOptions

    cfg = load_pipeline(plan, [*overrides, f"output_dir={run}"])
    cases, _ = build_datalist(cfg.data, cfg.transforms.spatial_dims, cfg.image_channels)
    run.mkdir(parents=True, exist_ok=True)
    cfg = resolve_statistics(resolve_channel_files(cfg, cases), cases, RunDir(run))
    device = torch.device("cpu")
    loader, _ = make_loaders(cfg, cases, [], seed=0, device=device)
    state = new_state(cfg, device, StepOptions())  # float32, as nnU-Net trains on the CPU
    inferer = build_inferer(cfg.infer, cfg.roi_size)
    ctx = EpochContext(state.model, training_loss(cfg), device, StepOptions(), DistInfo(), inferer)
    batches = _forever(loader)

    def step() -> tuple[float, float]:
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        train_epoch(ctx, state, [batch], "bench", 1)
        return t1 - t0, time.perf_counter() - t1

    def save(folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(dump_config(cfg))
        save_best(state, folder / "fold_0" / "checkpoints" / "best.pt", 0.0)
        (folder / "fold_0" / "metrics.csv").write_text("case\n")

    return step, save, cfg.train.batch_size * cfg.transforms.patches_per_image  # patches per step


def _forever(loader: Any) -> Any:
    while True:
        yield from loader


def serve(side: str, args: argparse.Namespace) -> None:
    """A training worker: set up, warm up, then answer ``epoch N`` (N timed iterations),
    ``save DIR`` and ``quit`` on stdin with one ``BENCH`` line of JSON each."""
    import torch

    torch.set_num_threads(args.threads)
    if side == "nnunet":
        step, save, batch = nnunet_stepper()
    else:
        step, save, batch = medseg_stepper(args.plan, json.loads(args.overrides), args.run)
    warm = [step() for _ in range(args.warmup)]
    _answer({"batch": batch, "threads": torch.get_num_threads(), "warmup": warm})
    for line in sys.stdin:
        command, _, value = line.strip().partition(" ")
        if command == "epoch":
            t0 = time.perf_counter()
            steps = [step() for _ in range(int(value))]
            _answer({"steps": steps, "seconds": time.perf_counter() - t0})
        elif command == "save":
            save(Path(value))
            _answer("saved")
        else:
            return


def _answer(value: Any) -> None:
    print(MARK + json.dumps(value), flush=True)


class Worker:
    """A training worker process of one side, driven over its stdin and stdout."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log: IO[str] = log.open("w")
        self.proc = subprocess.Popen(
            cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True
        )
        self.ready = self.read()

    def read(self) -> Any:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith(MARK):
                return json.loads(line[len(MARK) :])
        self.proc.wait()
        raise SystemExit(f"worker stopped ({self.proc.returncode}); its log:\n{_tail(self.log)}")

    def ask(self, command: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait(timeout=120)
        self._log.close()


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:]


# ---------------------------------------------------------------------------------------- measures


def measure_training(args: argparse.Namespace, work: Path, overrides: list[str]) -> dict[str, Any]:
    """``--epochs`` epochs of ``--iterations`` timed iterations in each worker, the two sides
    taking turns epoch by epoch; each side's weights saved after."""
    me = [sys.executable, str(Path(__file__).resolve()), "--threads", str(args.threads)]
    me += ["--warmup", str(args.warmup)]
    ours_cmd = [*me, "--worker", "medseg", "--plan", str(work / "plan.yaml"), "--run", str(work / "ms")]
    workers = {
        "nnunet": Worker([*me, "--worker", "nnunet"], args.nn_env | IN_PROCESS_DA, work / "nnunet-train.log"),
        "medseg": Worker([*ours_cmd, "--overrides", json.dumps(overrides)], args.ms_env, work / "ms.log"),
    }
    try:
        epochs: list[dict[str, Any]] = []
        for e in range(args.epochs):  # alternated, so that a slow spell of a shared machine falls on both
            order = ("nnunet", "medseg") if e % 2 == 0 else ("medseg", "nnunet")
            epochs.append({side: workers[side].ask(f"epoch {args.iterations}") for side in order})
        workers["nnunet"].ask("save -")
        workers["medseg"].ask(f"save {work / 'medseg-run'}")
    finally:
        for w in workers.values():
            w.close()
    return {"epochs": epochs, **{side: w.ready for side, w in workers.items()}}


def training_figures(measured: dict[str, Any]) -> dict[str, Any]:
    """Per side: median epoch seconds, median step, fetch and update seconds, samples per second;
    the epoch time ratio medseg / nnU-Net of each epoch and its median."""
    out: dict[str, Any] = {}
    for side in ("nnunet", "medseg"):
        steps = [s for e in measured["epochs"] for s in e[side]["steps"]]
        batch = measured[side]["batch"]
        epoch = statistics.median(e[side]["seconds"] for e in measured["epochs"])
        out[side] = {
            "batch": batch,
            "threads": measured[side]["threads"],
            "warmup": len(measured[side]["warmup"]),
            "epochs": len(measured["epochs"]),
            "steps": len(steps),
            "epoch_s": epoch,
            "step_s": statistics.median(f + u for f, u in steps),
            "fetch_s": statistics.median(f for f, _ in steps),
            "update_s": statistics.median(u for _, u in steps),
            "samples_per_s": batch * len(steps) / sum(e[side]["seconds"] for e in measured["epochs"]),
        }
    ratios = [e["medseg"]["seconds"] / e["nnunet"]["seconds"] for e in measured["epochs"]]
    out["epoch_ratios"], out["ratio"] = ratios, statistics.median(ratios)
    return out


def predict_commands(args: argparse.Namespace, work: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The three predict commands (input ``{in}``, output ``{out}``) with their environments."""
    nn = [str(Path(sys.executable).with_name("nnUNetv2_predict")), "-i", "{in}", "-o", "{out}"]
    nn += ["-d", str(IDENT), "-c", "3d_fullres", "-f", "0", "-device", "cpu", "-step_size", "0.5"]
    nn += ["--disable_tta", "--disable_progress_bar"]
    ms = [sys.executable, "-m", "medseg", "predict", "-m", str(work / "medseg-run"), "-i", "{in}"]
    ms += ["-o", "{out}", "--device", "cpu"]
    return {
        "nnUNetv2_predict": (nn, args.nn_env),
        "medseg predict --workers 0": ([*ms, "--workers", "0"], args.ms_env),
        "medseg predict (default workers)": (ms, args.ms_env),
    }


def measure_predict(args: argparse.Namespace, work: Path) -> dict[str, dict[str, list[float]]]:
    """Seconds of each predict command on the held-out cases (``all``) and on the first of them
    alone (``one``), alternating order over ``--rounds`` rounds; every run into a fresh folder
    (``pred/<command number>-<all or one>``, the last round's kept for scoring) that must hold one
    label map per input case."""
    commands = predict_commands(args, work)
    inputs = {"all": (HELD_OUT, args.test_cases), "one": (ONE_CASE, 1)}
    seconds: dict[str, dict[str, list[float]]] = {name: {"all": [], "one": []} for name in commands}
    for r in range(args.rounds):
        for name in list(commands)[:: 1 if r % 2 == 0 else -1]:
            for which, (folder, n) in inputs.items():
                cmd, env = commands[name]
                out = work / "pred" / f"{list(commands).index(name)}-{which}"
                images = str(work / "nnUNet_raw" / NAME / folder)
                shutil.rmtree(out, ignore_errors=True)
                t0 = time.perf_counter()
                filled = [c.replace("{in}", images).replace("{out}", str(out)) for c in cmd]
                proc = subprocess.run(filled, env=env, capture_output=True, text=True)
                seconds[name][which].append(time.perf_counter() - t0)
                _checked(proc, name)
                if len(found := list(out.glob("mr_*.nii.gz"))) != n:
                    raise SystemExit(f"{name}: {len(found)} label maps in {out}, expected {n}")
    return seconds


def dice_figures(work: Path, names: list[str]) -> dict[str, dict[str, float]]:
    """Mean Dice over the held-out cases of each class (and their mean) for each command's last
    predictions, against ``labelsTs``, by the same code (`medseg.evaluate.postprocessing.dice`)."""
    import numpy as np

    from medseg.evaluate.postprocessing import dice

    refs = sorted((work / "nnUNet_raw" / NAME / "labelsTs").glob("*.nii.gz"))
    out: dict[str, dict[str, float]] = {}
    for i, name in enumerate(names):
        scores: dict[str, list[float]] = {c: [] for c in CLASSES}
        for ref_path in refs:
            ref = _voxels(ref_path)
            pred = _voxels(work / "pred" / f"{i}-all" / ref_path.name)
            if pred.shape != ref.shape:
                raise SystemExit(f"{name}: {ref_path.name} predicted {pred.shape}, reference {ref.shape}")
            for value, cls in enumerate(CLASSES, start=1):
                scores[cls].append(dice(pred, ref, value))
        out[name] = {c: float(np.nanmean(v)) for c, v in scores.items()}
        out[name]["mean"] = float(np.mean([out[name][c] for c in CLASSES]))
    return out


def _voxels(path: Path) -> np.ndarray:
    """The voxel data of a NIfTI file, as stored."""
    import nibabel as nib
    import numpy as np
    from nibabel.dataobj_images import DataobjImage

    return np.asarray(cast(DataobjImage, nib.load(path)).dataobj)


def _checked(proc: subprocess.CompletedProcess[str], name: str) -> None:
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")


# ---------------------------------------------------------------------------------------- printing


def print_training(t: dict[str, Any], threads: int, iterations: int) -> None:
    print(
        f"\n### CPU training, epochs of {iterations} iterations ({threads} torch threads each side; "
        "an iteration: batch fetched, then one update)\n"
    )
    print("| | nnUNetTrainer (baseline) | medseg DynUNet |\n|---|---|---|")
    rows = (
        ("batch", "batch", "{}"),
        ("torch threads", "threads", "{}"),
        ("warm-up iterations (untimed)", "warmup", "{}"),
        ("epochs timed", "epochs", "{}"),
        ("iterations timed", "steps", "{}"),
        ("median epoch, s", "epoch_s", "{:.2f}"),
        ("median iteration, s", "step_s", "{:.3f}"),
        ("median fetch (loader and augmentation), s", "fetch_s", "{:.3f}"),
        ("median update (forward, loss, backward, optimiser), s", "update_s", "{:.3f}"),
        ("samples per second", "samples_per_s", "{:.2f}"),
    )
    for label, key, fmt in rows:
        print(f"| {label} | {fmt.format(t['nnunet'][key])} | {fmt.format(t['medseg'][key])} |")
    each = ", ".join(f"x{r:.2f}" for r in t["epoch_ratios"])
    print(f"\nepoch time medseg / nnUNetTrainer: x{t['ratio']:.2f} (median of the epochs: {each})")


def print_dice(d: dict[str, dict[str, float]], n: int) -> None:
    print(f"\n### Dice on the {n} held-out cases (labelsTs; each side's weights after the same iterations)\n")
    print(f"| predictions of | {' | '.join(CLASSES)} | mean | ratio of the mean to nnU-Net's |")
    print("|---|" + "---|" * (len(CLASSES) + 2))
    base = d["nnUNetv2_predict"]["mean"]
    for name, r in d.items():
        cells = " | ".join(f"{r[c]:.4f}" for c in CLASSES)
        print(f"| {name} | {cells} | {r['mean']:.4f} | x{r['mean'] / base:.3f} |")


def predict_figures(seconds: dict[str, dict[str, list[float]]], n: int) -> dict[str, Any]:
    """Per command: medians of the whole run and of a one-case run, seconds per case, seconds per
    case beyond the first (what start-up and model loading do not pay), ratios to nnU-Net's."""
    base = seconds["nnUNetv2_predict"]
    out: dict[str, Any] = {}
    for name, runs in seconds.items():
        whole, one = statistics.median(runs["all"]), statistics.median(runs["one"])
        ratios = [s / b for s, b in zip(runs["all"], base["all"], strict=True)]
        out[name] = {
            "seconds": whole,
            "one_case_s": one,
            "per_case_s": whole / n,
            "next_case_s": (whole - one) / max(1, n - 1),
            "runs": runs,
            "ratio": statistics.median(ratios),
            "round_ratios": ratios,
        }
    for r in out.values():
        r["next_case_ratio"] = r["next_case_s"] / out["nnUNetv2_predict"]["next_case_s"]
    return out


def print_predict(p: dict[str, Any], n: int, test_shape: list[int]) -> None:
    import multiprocessing

    print(f"\n### Predicting {n} held-out cases of {test_shape} voxels (whole commands, medians)\n")
    print(
        f"| command | s for the {n} | s per case | s for one case alone | s per case beyond the first "
        "| time ratio to nnUNetv2_predict, all cases (rounds) | same, beyond the first |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in p.items():
        each = ", ".join(f"x{x:.2f}" for x in r["round_ratios"])
        print(
            f"| {name} | {r['seconds']:.1f} | {r['per_case_s']:.2f} | {r['one_case_s']:.1f} | "
            f"{r['next_case_s']:.2f} | x{r['ratio']:.2f} ({each}) | x{r['next_case_ratio']:.2f} |"
        )
    print(
        f"\nnnUNetv2_predict sets cpu_count() = {multiprocessing.cpu_count()} torch threads itself; "
        "medseg --workers 0 one process of OMP_NUM_THREADS threads; medseg's default one process of "
        "one thread per core. No test-time mirroring on either side."
    )


def print_summary(t: dict[str, Any], p: dict[str, Any], d: dict[str, dict[str, float]]) -> None:
    """The headline figures, medseg against nnU-Net measured in this run."""
    ms, nn = "medseg predict --workers 0", "nnUNetv2_predict"
    print("\n### Summary (medseg / nnU-Net, same run; time ratios below 1: medseg faster)\n")
    print(
        f"training time per epoch: {t['medseg']['epoch_s']:.2f} s / {t['nnunet']['epoch_s']:.2f} s "
        f"(x{t['ratio']:.2f})"
    )
    print(
        f"predict time per case: {p[ms]['per_case_s']:.2f} s / {p[nn]['per_case_s']:.2f} s "
        f"(x{p[ms]['ratio']:.2f}); beyond the first case x{p[ms]['next_case_ratio']:.2f}"
    )
    print(f"mean Dice: {d[ms]['mean']:.4f} / {d[nn]['mean']:.4f} (x{d[ms]['mean'] / d[nn]['mean']:.3f})")


# -------------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="48,48,16", help="training cases, voxels x,y,z")
    p.add_argument("--test-shape", default="96,96,16", help="held-out cases, voxels x,y,z")
    p.add_argument("--train-cases", type=int, default=8)
    p.add_argument("--test-cases", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3, help="timed training epochs per side")
    p.add_argument("--iterations", type=int, default=4, help="training iterations per epoch, both sides")
    p.add_argument("--warmup", type=int, default=1, help="untimed training iterations per side first")
    p.add_argument("--rounds", type=int, default=2, help="timed runs of each predict command")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--keep", type=Path, help="work in this folder and keep it")
    p.add_argument("--worker", choices=["nnunet-plan", "nnunet", "medseg"], help=argparse.SUPPRESS)
    p.add_argument("--plan", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--run", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--overrides", default="[]", help=argparse.SUPPRESS)
    args, _ = p.parse_known_args()  # run_all.py passes its arguments to every benchmark
    return args


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The three comparisons in ``work``; the figures."""
    shape, test_shape = ([int(v) for v in s.split(",")] for s in (args.shape, args.test_shape))
    args.nn_env, args.ms_env = nnunet_env(work, args.threads), medseg_env(args.threads)
    data = work / "nnUNet_raw" / NAME
    write_dataset(data, shape, test_shape, args.train_cases, args.test_cases)
    print(f"{NAME}: {args.train_cases} training cases of {shape}, {args.test_cases} held-out of {test_shape}")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", "nnunet-plan"],
        env=args.nn_env,
        capture_output=True,
        text=True,
    )
    _checked(proc, "nnU-Net planning")
    theirs = in_medseg_axes(json.loads(proc.stdout.split(MARK)[-1]))
    ours = medseg_plan(data, work / "plan.yaml", args.ms_env)
    differ = print_plans(theirs, ours)
    training = training_figures(measure_training(args, work, topology_overrides(theirs)))
    print_training(training, args.threads, args.iterations)
    seconds = measure_predict(args, work)
    predict = predict_figures(seconds, args.test_cases)
    print_predict(predict, args.test_cases, test_shape)
    scores = dice_figures(work, list(seconds))
    print_dice(scores, args.test_cases)
    print_summary(training, predict, scores)
    return {
        "plans": {"nnunet": theirs, "medseg": ours, "differ": differ},
        "train": training,
        "predict": predict,
        "dice": scores,
    }


def main() -> int:
    args = parse_args()
    if args.worker == "nnunet-plan":
        sys.path.insert(0, str(HERE))
        _answer(worker_nnunet_plan())
        return 0
    if args.worker:
        serve(args.worker, args)
        return 0
    try:
        import nnunetv2  # noqa: F401
    except ImportError:
        print("skipped: nnunetv2 is not installed (pip install -e '.[plan-compare]')")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        figures = run(args, work)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
