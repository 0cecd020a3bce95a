"""``medseg predict --input dicomweb+http://...``: series from a PACS, results sent back.

The series a query finds (QIDO-RS: ``--study``, ``--series``, ``--modality`` or the study's
``predict.modalities``, ``--since``) and that the manifest does not already hold as done are
fetched instance by instance (WADO-RS) into ``OUTPUT/.dicomweb/``, each series into a folder that
is renamed into place only once complete. They then go through the same selection, segmentation
and outputs as a folder of DICOM files (:func:`medseg.infer.batch.predict_folder`), keyed by
SeriesInstanceUID in ``manifest.csv``, so a rerun fetches and segments only what is not done.
With ``--send``, every DICOM SEG not yet sent is stored back (STOW-RS), unless the PACS holds it
already (its UIDs derive from the source and the model); the manifest records ``sent`` and the
PACS's answer. A fetched series is removed once its outputs are written. ``summary.json`` counts
the series done by earlier runs, and keeps the earlier runs' summaries.

Before any model loads, :func:`check_first` checks the URLs, the credentials and that each PACS
answers; this module imports torch only inside :func:`predict_pacs`.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import ValidationError

from medseg.config import strict_yaml
from medseg.config.models import DicomwebConfig
from medseg.errors import MedsegError, mask_credentials
from medseg.infer.manifest import Manifest
from medseg.io.atomic import write_json
from medseg.io.dicomweb import Credentials, Pacs, parse_url
from medseg.io.names import safe_name

if TYPE_CHECKING:  # torch loads with the models, after the checks that need none
    import torch

    from medseg.infer.bundle import ModelBundle

log = logging.getLogger(__name__)
CACHE = ".dicomweb"
SUMMARY = "summary.json"


@dataclass(frozen=True)
class Query:
    """Which series to fetch."""

    studies: list[str] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    modality: str | None = None
    since: str | None = None


def connect(url: str, cfg: DicomwebConfig) -> Pacs:
    credentials = Credentials(
        cfg.token_file, cfg.token_env, cfg.username, cfg.password_file, cfg.password_env
    )
    return Pacs(url, credentials, cfg.timeout, cfg.retries)


def check_first(model: str, overrides: list[str], url: str, send_to: str | None) -> None:
    """What can fail without a model, before any model or torch loads: the URLs parse and, for a
    run folder (whose ``predict.dicomweb`` settings are read from its ``config.yaml`` and
    ``--set``), the PACS answers one cheap query with the credentials given.

    Raises:
        MedsegError: a malformed URL, a credential file or variable that is missing, or a PACS
            that refuses, does not answer or refuses the credentials.
    """
    endpoints = {parse_url(url).base: url}
    if send_to is not None:
        endpoints.setdefault(parse_url(send_to, "--send").base, send_to)
    cfg = dicomweb_settings(Path(model) / "config.yaml", overrides)
    if cfg is None:
        return  # an MLflow model, or settings load_pipeline will name the fault of
    for target in endpoints.values():
        connect(target, cfg).check()


def dicomweb_settings(config: Path, overrides: list[str]) -> DicomwebConfig | None:
    """``predict.dicomweb`` of a run folder's ``config.yaml`` with the ``--set`` values that reach
    into it (``predict.dicomweb.username=...``, ``predict.dicomweb={...}``, ``predict={...}``),
    read without loading the pipeline (which imports torch); None where it cannot be read so.

    Example:
        >>> import tempfile
        >>> config = Path(tempfile.mkdtemp()) / "config.yaml"
        >>> _ = config.write_text("predict: {dicomweb: {timeout: 30, username: ann}}")
        >>> cfg = dicomweb_settings(config, ["predict.dicomweb.timeout=2", "train.epochs=1"])
        >>> cfg.timeout, cfg.username
        (2.0, 'ann')
    """
    try:
        raw = strict_yaml.load(config.read_text()) if config.is_file() else None
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError):
        return None
    if not isinstance(raw, dict):
        return None
    for item in overrides:
        key, _, text = item.partition("=")
        parts = key.strip().split(".")
        if parts != ["predict", "dicomweb", *parts[2:]][: len(parts)] or len(parts) > 3:
            continue  # a setting outside predict.dicomweb
        try:
            value = strict_yaml.load(text) if text.strip() else None
        except (ValueError, yaml.YAMLError):
            value = text
        node = raw
        for part in parts[:-1]:  # as the pipeline loader sets a dotted key
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    predict = raw.get("predict")
    section = (predict.get("dicomweb") or {}) if isinstance(predict, dict) else None
    try:
        return DicomwebConfig.model_validate(section) if isinstance(section, dict) else None
    except ValidationError:
        return None


def fetch(pacs: Pacs, query: Query, out_dir: Path, modalities: list[str] | None) -> dict[str, int]:
    """Fetch the series the query finds that are not done yet; counts found, done and fetched."""
    modality = query.modality or (modalities[0] if modalities and len(modalities) == 1 else None)
    found = pacs.find_series(query.studies or None, query.series or None, modality, query.since)
    manifest = Manifest(out_dir)
    counts = {"found": len(found), "done_earlier": 0, "fetched": 0}
    for entry in found:
        uid = entry["series_uid"]
        folder = out_dir / CACHE / safe_name(uid)
        if manifest.finished_earlier(uid) is not None:
            counts["done_earlier"] += 1  # counted here: the batch never sees it
            shutil.rmtree(folder, ignore_errors=True)  # a copy left by a run stopped before cleaning
            continue
        if folder.is_dir():
            continue  # fetched by an earlier run that stopped before segmenting it
        partial = folder.with_name(folder.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        n = pacs.fetch_series(entry["study_uid"], uid, partial)
        partial.rename(folder)
        counts["fetched"] += 1
        log.info("fetched series %s: %d instance(s)", uid, n)
    return counts


ALREADY = "already in the PACS"  # manifest.csv's ``sent`` for a SEG the PACS held before sending


def send(pacs: Pacs, out_dir: Path) -> dict[str, int]:
    """STOW-RS of every DICOM SEG the manifest lists as done and not yet sent, unless the PACS
    already holds it: its UIDs derive from the source series and the model
    (:func:`medseg.io.dicom_seg.uid_seed`), so the same result made in another output folder is
    found by one QIDO-RS request and never stored twice."""
    import pydicom

    manifest = Manifest(out_dir)
    counts = {"sent": 0, "send_failed": 0, "already_in_pacs": 0}
    for row in list(manifest.rows.values()):
        if row.get("status") != "done" or not row.get("seg") or row.get("sent") in ("yes", ALREADY):
            continue
        seg = pydicom.dcmread(out_dir / row["seg"], stop_before_pixels=True)
        try:
            if pacs.holds(str(seg.StudyInstanceUID), str(seg.SOPInstanceUID)):
                manifest.record({**row, "sent": ALREADY, "pacs_answer": f"holds {seg.SOPInstanceUID}"})
                counts["already_in_pacs"] += 1
                continue
            answer = pacs.store(out_dir / row["seg"])
        except MedsegError as err:
            manifest.record({**row, "sent": "failed", "pacs_answer": mask_credentials(str(err))[:300]})
            counts["send_failed"] += 1
            raise
        manifest.record({**row, "sent": "yes", "pacs_answer": answer})
        counts["sent"] += 1
    if not counts["already_in_pacs"]:
        del counts["already_in_pacs"]  # summary.json says it only when it happened
    return counts


def predict_pacs(
    bundle: ModelBundle,
    url: str,
    out_dir: Path,
    device: torch.device,
    query: Query,
    send_to: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Fetch, segment and (with ``send_to``) send back.

    Args:
        bundle: the study's models.
        url: ``dicomweb+http(s)://...`` to read from.
        out_dir: local outputs, manifest and the fetched series.
        device: where inference runs.
        query: which series.
        send_to: ``dicomweb+http(s)://...`` to store the SEGs in (may be ``url``).
        options: passed on to :func:`medseg.infer.batch.predict_folder`.

    Returns:
        The batch's summary (also ``summary.json``), its ``done_earlier`` including the series done
        by earlier runs (not fetched again); ``pacs``: series found, done earlier and fetched,
        SEGs sent, failed to send and (when any) already in the PACS; ``finished``; and
        ``earlier_runs``, the summaries of the runs before this one into ``out_dir``.

    Raises:
        MedsegError: the PACS does not answer or refuses (what was done is kept for a rerun).
    """
    from medseg.infer.batch import predict_folder

    cfg = bundle.cfg.predict
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = earlier_runs(out_dir / SUMMARY)  # before the batch writes its own summary.json
    fetched = fetch(connect(url, cfg.dicomweb), query, out_dir, cfg.modalities)
    (out_dir / CACHE).mkdir(exist_ok=True)
    summary = predict_folder(bundle, out_dir / CACHE, out_dir, device, **options)
    summary["done_earlier"] += fetched["done_earlier"]  # never fetched, so never seen by the batch
    summary |= {"pacs": fetched, "finished": datetime.now().isoformat(timespec="seconds")}
    summary["earlier_runs"] = earlier
    write_json(out_dir / SUMMARY, summary)  # at once: the batch's file lacks the PACS and earlier runs
    try:
        if send_to:
            summary["pacs"].update(send(connect(send_to, cfg.dicomweb), out_dir))
    finally:
        write_json(out_dir / SUMMARY, summary)
        _clean(out_dir)
    return summary


def pacs_line(counts: dict[str, int]) -> str:
    """What a run did with the PACS, in the line ``medseg predict`` prints after its summary.

    Example:
        >>> pacs_line({"found": 2, "done_earlier": 1, "fetched": 1, "sent": 0, "send_failed": 0,
        ...            "already_in_pacs": 1})
        'PACS: 2 series found, 1 done earlier, 1 fetched; 0 SEG(s) sent, 1 already in the PACS, 0 failed'
    """
    found, earlier, fetched = counts["found"], counts["done_earlier"], counts["fetched"]
    line = f"PACS: {found} series found, {earlier} done earlier, {fetched} fetched"
    if "sent" in counts:
        line += f"; {counts['sent']} SEG(s) sent, {counts.get('already_in_pacs', 0)} already in the PACS"
        line += f", {counts['send_failed']} failed"
    return line


def earlier_runs(path: Path) -> list[dict[str, Any]]:
    """The summaries of the runs before this one into a folder, oldest first: ``summary.json``
    itself and the runs it keeps in ``earlier_runs``, so that no run's counts are lost."""
    try:
        last = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    if not isinstance(last, dict):
        return []
    kept = last.pop("earlier_runs", None)
    return [*(kept if isinstance(kept, list) else []), last]


def _clean(out_dir: Path) -> None:
    """Remove fetched series whose outputs are written."""
    manifest = Manifest(out_dir)
    for uid, row in manifest.rows.items():
        if row.get("status") == "done":
            shutil.rmtree(out_dir / CACHE / safe_name(uid), ignore_errors=True)
