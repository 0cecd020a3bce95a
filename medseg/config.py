"""Pipeline settings: pydantic models (one per stage, unknown keys refused) and the YAML loader.

A pipeline file is plain YAML read with ``yaml.safe_load``; nothing in it is evaluated. It may list
``include:`` fragments (paths relative to the including file) that are merged underneath it, and
``--set key=value`` overrides are merged on top. Relative paths written in a YAML file are resolved
against that file's folder; paths given with ``--set`` are resolved against the current folder.
"""

from __future__ import annotations

import difflib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from medseg.errors import ConfigError

# Dotted keys that hold file-system paths (resolved relative to the file that sets them).
PATH_KEYS = ("output_dir", "data.root", "split.file")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


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
    ``data.root``) or an inline list (``data.cases``) with columns ``id``, ``image``, ``label`` and
    optional ``patient_id``/``diagnosis``; images and labels may be PNG/JPEG, DICOM files, DICOM
    series folders or NIfTI, their paths relative to ``data.root``.
    """

    root: Path
    layout: Literal["isic2018", "table"] = "isic2018"
    table: str = "cases.csv"
    cases: list[dict[str, str]] | None = Field(None, description="inline table rows (layout: table)")
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
    on_bad_case: Literal["stop", "skip"] = "stop"
    mammography: MammographyConfig | None = None
    synthetic: SyntheticConfig | None = None

    @model_validator(mode="after")
    def _check_labels(self) -> DataConfig:
        if self.labels is not None and len(self.labels) + 1 != self.num_classes:
            raise ValueError(
                f"data.labels picks {len(self.labels)} class(es), so data.num_classes must be "
                f"{len(self.labels) + 1} (background included), not {self.num_classes}"
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
    patches_per_image: int = Field(2, ge=1)
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
    epochs: int = Field(50, ge=1)
    batch_size: int = Field(8, ge=1)
    num_workers: int = Field(0, ge=0)
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
    deterministic: bool = Field(
        False, description="deterministic algorithms only: bit-identical reruns on the CPU, slower on CUDA"
    )
    cache_rate: float = Field(1.0, ge=0, le=1)
    loss: ComponentConfig = ComponentConfig(name="DiceCE")
    optimizer: OptimizerConfig = OptimizerConfig()


class InferConfig(Strict):
    roi_size: list[int] | None = Field(None, description="default: transforms.spatial_size")
    overlap: float = Field(0.25, ge=0, lt=1)
    mode: Literal["gaussian", "constant"] = "gaussian"
    sw_batch_size: int = Field(4, ge=1)
    tta_flips: bool = Field(
        False, description="test-time augmentation: also predict every flip of the spatial axes and average"
    )
    largest_component: bool = Field(False, description="keep the largest connected component of each class")
    fill_holes: bool = Field(False, description="fill holes enclosed by a class")


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


class EvaluateConfig(Strict):
    nsd_tolerance: float | list[float] = Field(
        2.0, description="Surface Dice tolerance in mm (pixels for PNG/JPEG); a list gives one per class"
    )
    jaccard_threshold: float = Field(0.65, ge=0, le=1, description="ISIC thresholded Jaccard cut-off")
    n_worst: int = Field(
        10, ge=0, description="overlays of the worst cases per fold (the report shows the 10 worst overall)"
    )


class TrackingConfig(Strict):
    enabled: bool = True
    uri: str | None = Field(None, description="default: sqlite store mlflow.db in the run folder")
    experiment: str | None = Field(None, description="default: the pipeline name")
    log_checkpoints: bool = True


class PreviewConfig(Strict):
    n_cases: int = Field(4, ge=1)
    n_draws: int = Field(3, ge=1, description="augmented draws shown per case")


class PipelineConfig(Strict):
    name: str
    output_dir: Path
    seed: int = 0
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


# ----------------------------------------------------------------------------- loading


def load_pipeline(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Load, merge, validate and bind a pipeline file.

    Example:
        >>> cfg = load_pipeline("pipelines/demo.yaml", ["train.epochs=2"])  # doctest: +SKIP
        >>> cfg.train.epochs
        2
    """
    path = Path(path)
    raw = _load_with_includes(path.resolve(), stack=())
    for item in overrides or []:
        key, value = _parse_override(item)
        if key in PATH_KEYS and isinstance(value, str):
            value = str(Path(value).expanduser().resolve())
        _set_dotted(raw, key, value)
    cfg = validate_dict(raw, source=str(path))
    from medseg.registry import bind_components  # imports MONAI: only once the config is valid

    return bind_components(cfg)


def validate_dict(raw: dict[str, Any], source: str = "<config>") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: invalid configuration\n" + format_validation_error(err)) from None


class _Dumper(yaml.SafeDumper):
    """Block style for mappings, flow style for short lists of plain values ([192, 256])."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flat = all(isinstance(v, str | int | float | bool) or v is None for v in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(list, _represent_list)


def dump_config(cfg: PipelineConfig) -> str:
    """The fully resolved configuration, every default included, as YAML (loadable as a pipeline)."""
    return yaml.dump(cfg.model_dump(mode="json"), Dumper=_Dumper, sort_keys=False)


def _load_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(data).__name__}")
    return data


def _load_with_includes(path: Path, stack: tuple[Path, ...]) -> dict[str, Any]:
    if path in stack:
        chain = " -> ".join(str(p) for p in (*stack, path))
        raise ConfigError(f"{path}: include cycle: {chain}")
    data = _load_yaml(path)
    _resolve_paths(data, path.parent)
    includes = data.pop("include", []) or []
    if isinstance(includes, str):
        includes = [includes]
    merged: dict[str, Any] = {}
    for inc in includes:
        inc_path = (path.parent / inc).resolve()
        if not inc_path.is_file():
            raise ConfigError(f"{path}: include '{inc}' not found (looked for {inc_path})")
        merged = deep_merge(merged, _load_with_includes(inc_path, (*stack, path)))
    return deep_merge(merged, data)


def _resolve_paths(data: dict[str, Any], base: Path) -> None:
    for key in PATH_KEYS:
        parts = key.split(".")
        node: Any = data
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(parts[-1]), str):
            p = Path(node[parts[-1]]).expanduser()
            node[parts[-1]] = str(p if p.is_absolute() else (base / p).resolve())


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """Merge ``top`` over ``base``: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(item: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"--set '{item}': expected key=value, for example train.epochs=2")
    key, _, text = item.partition("=")
    key = key.strip()
    if not key:
        raise ConfigError(f"--set '{item}': the key is empty")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key, value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    node = data
    parts = key.split(".")
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


# ----------------------------------------------------------------------------- error messages


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = tuple(e["loc"])
        dotted = ".".join(str(p) for p in loc) or "<top level>"
        if e["type"] == "extra_forbidden":
            fields = fields_at(PipelineConfig, loc[:-1])
            close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6)
            prefix = ".".join(str(p) for p in loc[:-1] if not isinstance(p, int))
            if close:
                hint = f"did you mean {prefix + '.' if prefix else ''}{close[0]}?"
            else:
                hint = f"valid keys here: {', '.join(sorted(fields))}"
            lines.append(f"  {dotted}: unknown key, {hint}")
        elif e["type"] == "missing":
            lines.append(f"  {dotted}: required key is missing")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            lines.append(f"  {dotted}: {msg} (got {e.get('input')!r})")
    return "\n".join(lines)


def fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Names of the fields of the (nested) model found at ``loc``; [] when there is none."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        sub = _model_in(current)
        if sub is None or part not in sub.model_fields:
            return []
        current = sub.model_fields[part].annotation
    sub = _model_in(current)
    return list(sub.model_fields) if sub is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
