"""A case of a study: one or more image channel files, a label, who it belongs to.

Every layout (ISIC folders, a table, an nnU-Net or Decathlon data set) lists its cases as
:class:`Case` records, and every later stage (splits, loaders, statistics, held-out prediction,
overlays) takes them. ``datalist.json`` holds them as :meth:`Case.to_json` writes them; older run
folders (``image`` as one path, ``patient_id``) are read too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from medseg.io.source import Source


@dataclass(frozen=True)
class Case:
    """One case: its channel files in order, its label map, its patient and diagnosis.

    Attributes:
        id: the case id (names its prediction and overlay files).
        images: one source per channel file, in channel order (an RGB picture is one file of
            three channels; T1, T2 and FLAIR are three files).
        label: the label map, or None for a case to predict only.
        patient: who the case belongs to (folds never split a patient); default the id.
        diagnosis: what folds are stratified by, if known.
        extra: other columns of the case's table row (``split.group_by`` may name one).
        shape: the spatial shape measured at ingest ((rows, columns) in 2D, canonical in 3D).
        spacing: the voxel size measured at ingest (mm, pixels for pictures).

    Example:
        >>> from medseg.io.source import Source
        >>> case = Case("c1", (Source.one("c1_0000.nii.gz", "nifti"), Source.one("c1_0001.nii.gz", "nifti")))
        >>> case.patient, case.attribute("patient_id"), len(case.images)
        ('c1', 'c1', 2)
        >>> Case.from_json(case.to_json()) == case
        True
    """

    id: str
    images: tuple[Source, ...]
    label: Source | None = None
    patient: str = ""
    diagnosis: str | None = None
    extra: Mapping[str, str] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None
    spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not self.patient:
            object.__setattr__(self, "patient", self.id)

    def attribute(self, name: str) -> str | None:
        """A grouping or stratification value: ``patient_id``, ``diagnosis`` or a table column."""
        if name in ("patient_id", "patient"):
            return self.patient
        if name == "diagnosis":
            return self.diagnosis
        return self.extra.get(name) or None

    def measured(self, shape: tuple[int, ...], spacing: tuple[float, ...]) -> Case:
        """This case with the shape and spacing ingest measured."""
        return replace(
            self, shape=tuple(int(s) for s in shape), spacing=tuple(round(float(s), 6) for s in spacing)
        )

    def item(self, with_label: bool = True) -> dict[str, Any]:
        """The MONAI dataset item: ``id``, ``image`` (the channel sources) and ``label``."""
        item: dict[str, Any] = {"id": self.id, "image": self.images}
        if with_label and self.label is not None:
            item["label"] = self.label
        return item

    @property
    def files(self) -> list[str]:
        """Every file of the case (images, then the label), for digests and messages."""
        sources = [*self.images, *([self.label] if self.label is not None else [])]
        return [str(f) for s in sources for f in s.files]

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "images": [s.to_json() for s in self.images],
            "label": self.label.to_json() if self.label is not None else None,
            "patient": self.patient,
            "diagnosis": self.diagnosis,
        }
        if self.extra:
            out["extra"] = dict(self.extra)
        if self.shape is not None:
            out["shape"], out["spacing"] = list(self.shape), list(self.spacing or ())
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Case:
        """A case as :meth:`to_json` wrote it, or as older ``datalist.json`` files hold it."""
        if "images" in data:
            images = tuple(Source.from_json(s) for s in data["images"])
            label = Source.from_json(data["label"]) if data.get("label") else None
        else:  # before typed cases: one image path, kinds found again by the readers
            from medseg.io.readers import source_of

            images = (source_of(data["image"]),)
            label = source_of(data["label"]) if data.get("label") else None
        shape = data.get("shape") or ([data["height"], data["width"]] if "height" in data else None)
        return cls(
            str(data["id"]),
            images,
            label,
            str(data.get("patient") or data.get("patient_id") or data["id"]),
            data.get("diagnosis") or None,
            dict(data.get("extra") or {}),
            tuple(int(s) for s in shape) if shape else None,
            tuple(float(s) for s in data["spacing"]) if data.get("spacing") else None,
        )
