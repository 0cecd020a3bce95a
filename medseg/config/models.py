"""Pipeline settings: pydantic models, one per stage, unknown keys refused, frozen once built.

The models only describe and check settings; reading YAML, includes and ``--set`` overrides, and
binding component arguments, live in :mod:`medseg.config.load`. A configuration is immutable:
every later stage (binding, intensity statistics) makes a new object with ``model_copy``.

Example:
    >>> cfg = PipelineConfig.model_validate({"name": "x", "output_dir": "runs/x", "data": {"root": "d"}})
    >>> cfg.transforms.spatial_size, cfg.class_names
    ([192, 256], {1: 'class_1'})
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """Unknown keys refused; frozen, so a resolved configuration is never changed in place; a
    boolean where a number is expected refused (pydantic would read ``true`` as 1)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                if isinstance(data.get(name), bool) and _numeric(field.annotation):
                    raise ValueError(f"{name}: expected a number, got the boolean {data[name]}")
        return data


def _numeric(annotation: Any) -> bool:
    """Whether a field takes a number and not a boolean (``int``, ``float``, ``int | None``...)."""
    args = (
        typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType)
        else ()
    )
    options = set(args) if args else {annotation}
    return bool(options & {int, float, "int", "float"}) and bool not in options


class SyntheticConfig(Strict):
    """A generated data set written to ``data.root`` when that folder is missing: dermoscopy-like
    pictures in the ISIC layout, or CT-like volumes (NIfTI, one case as a DICOM series) in a table."""

    kind: Literal["dermoscopy", "ct"] = "dermoscopy"
    n_cases: int = Field(40, ge=4)
    n_patients: int | None = Field(None, ge=2, description="default: about 3 images per 2 patients")
    height: int = Field(120, ge=32)
    width: int = Field(160, ge=32)
    depth: int = Field(24, ge=8, description="slices of CT-like volumes")
    seed: int = 0


class LabelCode(Strict):
    """A class's SNOMED CT codes in its DICOM SEG: each ``[value, scheme, meaning]``."""

    category: tuple[str, str, str] = Field(description="e.g. [49755003, SCT, Morphologically Abnormal ...]")
    type: tuple[str, str, str] = Field(description="e.g. [4147007, SCT, Mass]")
    laterality: Literal["left", "right"] | None = None
    color: tuple[int, int, int] | None = Field(None, description="recommended display colour, RGB 0-255")


class MammographyConfig(Strict):
    """2D mammography reading: one orientation for every breast, background cropped, size capped."""

    voi_lut: bool = Field(False, description="apply the VOI LUT or WindowCenter/WindowWidth of the file")
    flip_to: Literal["L", "R"] | None = Field(
        "L", description="flip images of the other laterality left-right; null = keep"
    )
    crop_breast: bool = True
    crop_margin: int = Field(16, ge=0, description="pixels kept around the breast bounding box")
    max_size: int | None = Field(
        1024, ge=32, description="downsample so the longer side is at most this; spacing is updated"
    )


LabelSelection = dict[str, int | list[int]]


class DataConfig(Strict):
    """Where the cases are and how to check them.

    ``isic2018``: the ISIC 2018 Task 1 folders. ``table``: a CSV (``data.table``, relative to
    ``data.root``) or an inline list (``data.cases``) with columns ``id``, ``image`` (or
    ``image_0000``, ``image_0001``, ... one file per channel), ``label`` and optional
    ``patient_id``/``diagnosis``; images and labels may be PNG/JPEG, DICOM files, DICOM series
    folders or NIfTI, their paths relative to ``data.root``. ``nnunet``: an nnU-Net v2 data set
    folder (``dataset.json``, ``imagesTr``, ``labelsTr``); ``decathlon``: a Medical Segmentation
    Decathlon task. Their ``dataset.json`` gives the channel and class names, unless set here.
    """

    root: Path
    layout: Literal["isic2018", "table", "nnunet", "decathlon"] = "isic2018"
    table: str = "cases.csv"
    cases: list[dict[str, str | list[str]]] | None = Field(
        None, description="inline table rows (layout: table); image may be a list of channel files"
    )
    channel_names: list[str] | None = Field(
        None,
        description="the name of each input channel, in order (nnU-Net's channel_names, such as [T1, "
        "T2, FLAIR]); recorded with the models, so predict refuses data whose channels differ",
    )
    channel_files: int | None = Field(
        None,
        ge=1,
        description="image files per case, found at ingest and recorded in the run's config.yaml; with "
        "more than one (or an nnU-Net data set), predict reads inputs named CASE_0000, CASE_0001, ...",
    )
    image_dir: str = "ISIC2018_Task1-2_Training_Input"
    mask_dir: str = "ISIC2018_Task1_Training_GroundTruth"
    mask_suffix: str = "_segmentation"
    image_extensions: list[str] = [".jpg", ".jpeg", ".png"]
    mask_extension: str = ".png"
    metadata: str | None = "metadata.csv"
    in_channels: int = Field(3, ge=1)
    num_classes: int = Field(2, ge=2, description="classes including background")
    binarize_threshold: float | None = Field(
        None, description="masks with values other than {0,1} or {0,255} are refused unless this is set"
    )
    ignore_value: int | None = Field(None, description="label value excluded from loss and metrics")
    labels: LabelSelection | None = Field(
        None,
        description="classes picked (in order, as 1, 2, ...) from the label values, such as "
        "{liver: 5, kidneys: [2, 3]}; other values become background",
    )
    class_names: list[str] | None = Field(
        None,
        description="names of the foreground classes 1, 2, ... when data.labels does not pick them, "
        "such as [skin_lesion]; shown in tables, plots and metric names; default class_1, class_2, ...",
    )
    label_codes: dict[str, str | LabelCode] | None = Field(
        None,
        description="SNOMED CT codes of each class's DICOM SEG segment, by class name: a built-in name "
        "(liver, spleen, kidney_left, kidney_right, lung_nodule, lung_tumour, breast, breast_mass, "
        "skin_lesion) or {category, type, laterality, color}; default: the class name if built in",
    )
    on_bad_case: Literal["stop", "skip"] = "stop"
    max_image_pixels: int = Field(
        89_478_485,
        ge=1,
        description="pictures with more pixels are refused unread (Pillow's guard against decompression "
        "bombs); raise it for trusted large files",
    )
    mammography: MammographyConfig | None = None
    synthetic: SyntheticConfig | None = None

    @model_validator(mode="after")
    def _check_labels(self) -> DataConfig:
        if self.labels is not None and len(self.labels) + 1 != self.num_classes:
            raise ValueError(
                f"data.labels picks {len(self.labels)} class(es), so data.num_classes must be "
                f"{len(self.labels) + 1} (background included), not {self.num_classes}"
            )
        if self.labels is not None and "mean" in self.labels:
            raise ValueError("data.labels: 'mean' names the mean over classes; call the class otherwise")
        if self.class_names is not None:
            if self.labels is not None:
                raise ValueError("data.class_names: the classes are named by data.labels already; give one")
            if len(self.class_names) + 1 != self.num_classes:
                raise ValueError(
                    f"data.class_names names {len(self.class_names)} class(es) but data.num_classes is "
                    f"{self.num_classes} (background included); give {self.num_classes - 1} name(s)"
                )
            bad = [n for n in self.class_names if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", n)]
            if bad or len(set(self.class_names)) != len(self.class_names) or "mean" in self.class_names:
                raise ValueError(
                    f"data.class_names: {self.class_names} must be distinct names of letters, digits and "
                    "'_' starting with a letter (they become metric names), and not 'mean'"
                )
        return self


class SplitConfig(Strict):
    """Cross-validation folds: grouped, stratified, seeded, saved to splits.json and reused."""

    n_folds: int = Field(5, ge=2)
    seed: int = 0
    group_by: str | None = "patient_id"
    stratify_by: str | None = "diagnosis"
    file: Path | None = None
    folds: list[int] | None = Field(None, description="folds to run; default all")


TransformList = list[dict[str, dict[str, Any]]]


class TransformsConfig(Strict):
    """Dictionary transforms on ``image`` and ``label``: deterministic preprocessing, then augmentation."""

    spatial_size: list[int] | None = Field(
        None,
        description="resize every image to this size; default [192, 256] when no spacing or patch is set",
    )
    spacing: list[float] | None = Field(
        None, description="resample to this voxel spacing in mm (nnU-Net style: edges kept, size rounded)"
    )
    patch_size: list[int] | None = Field(
        None, description="train on random patches of this size; inference slides a window of it"
    )
    patch_pos: float = Field(1.0, ge=0, description="weight of patches centred on foreground")
    patch_neg: float = Field(1.0, ge=0, description="weight of patches centred on background")
    patches_per_image: int = Field(
        2, ge=1, description="patches drawn from each case in a step: a step holds train.batch_size x this"
    )
    preprocess: TransformList = [{"NormalizeIntensityd": {"channel_wise": True}}]
    train: TransformList = [
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 0}},
        {"RandFlipd": {"prob": 0.5, "spatial_axis": 1}},
        {"RandAffined": {"prob": 0.5, "rotate_range": 0.4, "scale_range": 0.15, "padding_mode": "zeros"}},
        {"RandScaleIntensityd": {"prob": 0.5, "factors": 0.15}},
        {"RandShiftIntensityd": {"prob": 0.5, "offsets": 0.1}},
    ]

    @model_validator(mode="before")
    @classmethod
    def _default_size(cls, data: Any) -> Any:
        """2D pictures resized to 192x256 unless a size, spacing or patch size is given."""
        if isinstance(data, dict) and all(
            data.get(k) is None for k in ("spatial_size", "spacing", "patch_size")
        ):
            data = {**data, "spatial_size": [192, 256]}
        return data

    @model_validator(mode="after")
    def _check_grid(self) -> TransformsConfig:
        if self.spatial_size is not None and self.spacing is not None:
            raise ValueError(
                "set transforms.spatial_size (resize) or transforms.spacing (resample), not both"
            )
        if self.spatial_size is None and self.patch_size is None:
            raise ValueError(
                "the network input size is unset: give transforms.spatial_size (whole images resized) "
                "or transforms.patch_size (patches)"
            )
        sizes = [v for v in (self.spatial_size, self.spacing, self.patch_size) if v is not None]
        if len({len(v) for v in sizes}) > 1 or len(sizes[0]) not in (2, 3):
            raise ValueError("spatial_size, spacing and patch_size need the same length, 2 or 3")
        return self

    @property
    def spatial_dims(self) -> int:
        return len(self.patch_size or self.spatial_size or [])

    @property
    def input_size(self) -> list[int]:
        """What the network sees in training: the patch when patches are used, else the whole image."""
        size = self.patch_size or self.spatial_size
        assert size is not None
        return size

    @field_validator("preprocess", "train")
    @classmethod
    def _one_name_each(cls, value: TransformList) -> TransformList:
        for i, item in enumerate(value):
            if len(item) != 1:
                raise ValueError(f"item {i} must be one mapping `Name: {{args}}`, got keys {sorted(item)}")
        return value


class ComponentConfig(Strict):
    """A registry name and its arguments (bound to the component's signature when the config loads)."""

    name: str
    args: dict[str, Any] = {}


class OptimizerConfig(Strict):
    """AdamW with a cosine schedule over ``train.epochs``."""

    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    eta_min: float = Field(1e-6, ge=0)
    warmup_epochs: int = Field(0, ge=0)


class TrainConfig(Strict):
    """Optimisation, early stopping, device and loader settings of each fold."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(
        8, ge=1, description="cases per step (with transforms.patch_size each gives patches_per_image)"
    )
    num_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = Field(
        "auto",
        description="loader processes; auto: none on a CPU; on a GPU one per spare core (at most 8, one "
        "per 4 steps of an epoch), none with the device loader",
    )
    loader: Literal["auto", "standard", "device"] = Field(
        "auto",
        description="device: MONAI's fast-training recipe (cache on the GPU, ThreadDataLoader, random "
        "transforms on GPU tensors); standard: worker processes; auto: device for 2D studies on CUDA "
        "whose cache fits a quarter of the GPU memory",
    )
    val_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="training cases held back for early stopping; 0 = none, keep the last epoch",
    )
    val_every: int = Field(1, ge=1)
    patience: int | None = Field(15, ge=1, description="epochs without a better validation Dice; null = off")
    min_epochs: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32",
        description="CPU: bf16 autocast of the network in training and inference (on CUDA train.amp "
        "decides: float16); auto: bf16 where the CPU has it natively (avx512_bf16 or amx_bf16), else "
        "fp32, as emulated bf16 is several times slower",
    )
    channels_last: bool = Field(
        False, description="train with weights and batches in the channels-last memory format"
    )
    compile: bool = Field(
        False,
        description="torch.compile the network for training (a C++ compiler on a CPU; a minute or more of "
        "compiling per fold before the first step); medseg plan measures whether it pays",
    )
    deterministic: bool = Field(
        False, description="deterministic algorithms only: bit-identical reruns on the CPU, slower on CUDA"
    )
    cache_rate: float = Field(1.0, ge=0, le=1)
    loss: ComponentConfig = ComponentConfig(name="DiceCE")
    optimizer: OptimizerConfig = OptimizerConfig()


class InferConfig(Strict):
    """Sliding-window inference, test-time flips and post-processing."""

    roi_size: list[int] | None = Field(None, description="default: transforms.spatial_size")
    overlap: float = Field(0.25, ge=0, lt=1)
    mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = Field(4, ge=1)
    score_overlap: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="overlap of the windows of the flips run for the uncertainty score alone (evaluate."
        "uncertainty without tta_flips): 0 tiles the grid, a third to a tenth of the windows of 0.5 in 3D; "
        "the prediction itself keeps infer.overlap, and the study and predict score alike",
    )
    tta_flips: bool = Field(
        False, description="test-time augmentation: also predict every flip of the spatial axes and average"
    )
    largest_component: bool | list[int] | Literal["foreground", "auto"] = Field(
        False,
        description="keep the largest connected component: of each class (true), of these classes, of all "
        "foreground as one, or auto: chosen from the cross-validated Dice at the end of the run",
    )
    fill_holes: bool | Literal["auto"] = Field(
        False,
        description="fill holes enclosed by a class, or auto: chosen from the cross-validated Dice at the "
        "end of the run, after the largest component (needs largest_component: auto)",
    )

    @model_validator(mode="after")
    def _holes_chosen_with_components(self) -> InferConfig:
        if self.fill_holes == "auto" and self.largest_component != "auto":
            raise ValueError(
                "infer.fill_holes: auto is chosen together with infer.largest_component: auto; set "
                "largest_component: auto, or fill_holes: true or false"
            )
        return self


class DicomwebConfig(Strict):
    """How ``medseg predict`` talks to a PACS over DICOMweb; secrets are read from a file or an
    environment variable named here, never written here."""

    timeout: float = Field(
        30.0, gt=0, description="seconds a request's whole answer may take (a trickling server is cut off)"
    )
    retries: int = Field(2, ge=0, description="further attempts of a request that fails to connect")
    token_file: Path | None = Field(None, description="file holding a bearer token")
    token_env: str | None = Field(None, description="environment variable holding a bearer token")
    username: str | None = Field(None, description="basic authentication user")
    password_file: Path | None = Field(None, description="file holding the basic authentication password")
    password_env: str | None = Field(None, description="environment variable holding that password")


class PredictConfig(Strict):
    """Which inputs ``medseg predict`` segments and what it writes for each."""

    modalities: list[str] | None = Field(
        None, description="DICOM Modality values accepted, e.g. [CT]; default: any image modality"
    )
    orientation: Literal["any", "axial"] = Field(
        "any", description="axial: DICOM series whose slice normal is within about 18 degrees of head-foot"
    )
    min_slices: int = Field(1, ge=1, description="DICOM series with fewer slices are skipped")
    write_seg: bool = Field(True, description="a DICOM SEG next to each prediction of a DICOM input")
    overlays: bool = Field(True, description="PNG overlays for 2D inputs")
    write_probabilities: bool = Field(
        False,
        description="also <name>_probabilities.nii.gz: the mean class probabilities (last axis), on the "
        "input's grid in 2D and its canonical RAS grid in 3D",
    )
    review_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="manifest.csv's review flag is yes for inputs whose uncertainty (the disagreement of "
        "the first fold model's test-time flips, 0 = none) is above this; null: the threshold the study "
        "chose from its held-out cases (review.json), written into the run's config.yaml",
    )
    write_rtstruct: bool = Field(
        False, description="also an RT Structure Set of each DICOM series, for treatment-planning systems"
    )
    dicomweb: DicomwebConfig = DicomwebConfig()
    rtstruct_max_contours: int = Field(
        20_000,
        ge=1,
        description="an RTSTRUCT needing more contours than this is not written and manifest.csv says why: "
        "a fragmented prediction (a poor model) makes files of hundreds of MB that planning systems cannot "
        "load; a clean prediction of a few organs needs a few hundred to a few thousand",
    )
    rtstruct_tolerance: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="RTSTRUCT outlines are simplified (Douglas-Peucker) with this tolerance in pixels, below "
        "a voxel: an organ's outline keeps about a quarter of its points and covers the same pixels when "
        "drawn back; 0 keeps every point",
    )
    statistics: bool = Field(
        False,
        description="also <name>_statistics.json: per class the voxels, volume and the mean, median, std, "
        "min and max of the image as read (HU for CT), on the input's grid, and mean_<class>/median_<class> "
        "columns in manifest.csv",
    )
    classes: list[str] | None = Field(
        None,
        description="write only these classes (names of data.labels or data.class_names), e.g. [liver, "
        "spleen], as TotalSegmentator's --roi_subset; the others become background in every output but the "
        "probabilities; default all",
    )


class EvaluateConfig(Strict):
    """Metric settings of the held-out evaluation."""

    nsd_tolerance: float | list[float] = Field(
        2.0, description="Surface Dice tolerance in mm (pixels for PNG/JPEG); a list gives one per class"
    )
    jaccard_threshold: float = Field(0.65, ge=0, le=1, description="ISIC thresholded Jaccard cut-off")
    n_worst: int = Field(10, ge=0, description="the report shows this many worst cases over all folds")
    overlays: Literal["all", "worst", "none"] = Field(
        "all",
        description="overlay pictures of every held-out case (the report's case browser opens "
        "them), of each fold's n_worst, or none",
    )
    overlay_channel: int = Field(
        0,
        ge=0,
        description="the image channel drawn under the contours of an overlay (of a multi-channel "
        "case such as T1/T2/FLAIR, by its place in data.channel_names); 3-channel pictures are drawn "
        "in colour",
    )
    uncertainty: bool = Field(
        True,
        description="score each held-out case by the disagreement of its test-time flips (one extra "
        "inference per spatial axis) and report how well the score finds the worst cases",
    )


class TrackingConfig(Strict):
    """MLflow: the store, the experiment, whether checkpoints are logged."""

    enabled: bool = True
    uri: str | None = Field(
        None, description="an MLflow server or database; default: the sqlite store tracking.store names"
    )
    store: Literal["project", "run"] = Field(
        "project",
        description="with no tracking.uri: project: mlflow.db and mlartifacts/ beside the run folder "
        "(in the folder holding output_dir), one store for every study there; run: inside the run folder",
    )
    experiment: str | None = Field(None, description="default: the pipeline name")
    log_checkpoints: bool = True
    log_models: bool = Field(
        True,
        description="log each fold's best checkpoint and the fold ensemble as MLflow PyTorch models, "
        "registrable from the MLflow UI",
    )


SBATCH_SET_BY_MEDSEG = (
    "--array",
    "--output",
    "--error",
    "--dependency",
    "--chdir",
    "--parsable",
    "--wrap",
    "--job-name",
    "--cpus-per-task",
    "--mem",
    "--time",
    "--partition",
    "--gres",
)


class ExecutorConfig(Strict):
    """Where ``--executor slurm`` or ``local`` runs a study's fold jobs and a batch's parts.

    Each job asks Slurm for these resources; the settings leave the models alone, so they may
    change between reruns.
    """

    partition: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_.,-]+$",
        description="Slurm partition (sbatch --partition); default the cluster's",
    )
    gpus: int = Field(0, ge=0, description="GPUs per job (sbatch --gres=gpu:N)")
    cpus: int = Field(4, ge=1, description="CPU cores per job (sbatch --cpus-per-task); also its threads")
    memory: str | None = Field(
        None, pattern=r"^[1-9][0-9]*[KMGT]?$", description="memory per job, e.g. 32G (sbatch --mem)"
    )
    time_limit: str | None = Field(
        None,
        pattern=r"^([0-9]+-)?[0-9]+(:[0-9]{2}){0,2}$",
        description="wall time per job, e.g. 12:00:00 or 2-00:00:00 (sbatch --time)",
    )
    max_jobs: int | None = Field(
        None, ge=1, description="jobs of the array running at once (sbatch --array=...%N); default no limit"
    )
    sbatch_options: list[str] = Field(
        [], description="further sbatch options, each one word such as --account=lab or --qos=normal"
    )
    poll_seconds: float = Field(5.0, gt=0, description="--wait asks Slurm for the jobs' states this often")

    @field_validator("sbatch_options")
    @classmethod
    def _options(cls, value: list[str]) -> list[str]:
        for option in value:
            name = option.split("=", 1)[0]
            if not re.fullmatch(r"--[a-z][a-z0-9-]*(=[^\s]*)?", option):
                raise ValueError(f"{option!r}: expected one option word such as --account=lab")
            if name in SBATCH_SET_BY_MEDSEG:
                raise ValueError(f"{name} is set by medseg or by another executor key; leave it out")
        return value


class PreviewConfig(Strict):
    """The augmentation preview (``preview.png``)."""

    n_cases: int = Field(4, ge=1)
    n_draws: int = Field(3, ge=1, description="augmented draws shown per case")


def image_channels(data: DataConfig, transforms: TransformsConfig) -> int:
    """Channels each case's image files add up to: 1 when CT windows make the channels, else
    ``data.in_channels``."""
    windows = [item for item in transforms.preprocess if "CTWindowd" in item]
    return 1 if windows else data.in_channels


class NetworkSpec(BaseModel):
    """What builds a network: the ``model`` section and the sizes the data and transforms fix."""

    model_config = ConfigDict(frozen=True)

    model: ComponentConfig
    spatial_dims: int
    in_channels: int
    out_channels: int


class PipelineConfig(Strict):
    """A whole study: one section per stage. Built by :func:`medseg.config.load.load_pipeline`."""

    name: str
    output_dir: Path
    seed: int = 0
    fingerprint: Path | None = Field(
        None, description="fingerprint.json written by `medseg plan`; copied into the run folder and MLflow"
    )
    data: DataConfig
    split: SplitConfig = SplitConfig()
    transforms: TransformsConfig = TransformsConfig()
    model: ComponentConfig = ComponentConfig(name="UNet")
    train: TrainConfig = TrainConfig()
    infer: InferConfig = InferConfig()
    predict: PredictConfig = PredictConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    tracking: TrackingConfig = TrackingConfig()
    preview: PreviewConfig = PreviewConfig()
    executor: ExecutorConfig = ExecutorConfig()

    @model_validator(mode="after")
    def _check_cross_fields(self) -> PipelineConfig:
        if self.split.folds is not None:
            bad = [k for k in self.split.folds if not 0 <= k < self.split.n_folds]
            if bad:
                raise ValueError(f"split.folds: {bad} outside 0..{self.split.n_folds - 1}")
        tol = self.evaluate.nsd_tolerance
        n_fg = self.data.num_classes - 1
        if isinstance(tol, list) and len(tol) != n_fg:
            raise ValueError(f"evaluate.nsd_tolerance: {len(tol)} values for {n_fg} foreground classes")
        if any(t <= 0 for t in (tol if isinstance(tol, list) else [tol])):
            raise ValueError("evaluate.nsd_tolerance: tolerances must be positive")
        names = self.data.channel_names
        if names is not None and len(names) != self.image_channels:
            raise ValueError(
                f"data.channel_names names {len(names)} channel(s) but the images have {self.image_channels} "
                "(data.in_channels); give one name per channel"
            )
        ignore = self.data.ignore_value
        if ignore is not None and 0 <= ignore < self.data.num_classes:
            raise ValueError(f"data.ignore_value {ignore} is a class index; use a value >= num_classes")
        return self

    @property
    def roi_size(self) -> list[int]:
        return self.infer.roi_size or self.transforms.input_size

    def nsd_tolerance(self, label: int) -> float:
        tol = self.evaluate.nsd_tolerance
        return float(tol[label - 1] if isinstance(tol, list) else tol)

    @property
    def class_names(self) -> dict[int, str]:
        """Foreground class names: ``data.labels`` keys when classes were picked, else
        ``data.class_names``, else ``class_<k>``."""
        if self.data.labels:
            return {i + 1: str(name) for i, name in enumerate(self.data.labels)}
        if self.data.class_names:
            return {i + 1: name for i, name in enumerate(self.data.class_names)}
        return {k: f"class_{k}" for k in range(1, self.data.num_classes)}

    @property
    def reads_channel_files(self) -> bool:
        """Whether ``predict`` takes ``{CASE}_{XXXX}{ending}`` files as the channels of ``CASE``:
        a study of an nnU-Net data set, or of cases of several image files."""
        return self.data.layout == "nnunet" or (self.data.channel_files or 1) > 1

    @property
    def image_channels(self) -> int:
        """Channels each case's image files add up to (:func:`image_channels`)."""
        return image_channels(self.data, self.transforms)

    @property
    def network(self) -> NetworkSpec:
        """What builds the network (:func:`medseg.registry.build_network`)."""
        return NetworkSpec(
            model=self.model,
            spatial_dims=self.transforms.spatial_dims,
            in_channels=self.data.in_channels,
            out_channels=self.data.num_classes,
        )
