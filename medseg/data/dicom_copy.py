"""A DICOM series copied under new UIDs: anonymised files (no Study/Series/SOP Instance UIDs, which
a DICOM SEG must reference) made referenceable, or one real series made into several distinct
ones for a batch. UIDs are derived from ``key``, so the same key gives the same series.
"""

from __future__ import annotations

from pathlib import Path


def copy_with_new_uids(src: Path, dest: Path, key: str) -> str:
    """Copy every file of the series in ``src`` into ``dest`` (created) under new Study, Series and
    SOP Instance UIDs, the SOP Class UID filled from the file meta; the new SeriesInstanceUID."""
    import pydicom
    from pydicom.uid import generate_uid

    dest.mkdir(parents=True)
    study, series = generate_uid(entropy_srcs=[key, "study"]), generate_uid(entropy_srcs=[key, "series"])
    for f in sorted(Path(src).iterdir()):
        ds = pydicom.dcmread(f)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid(
            entropy_srcs=[series, f.name]
        )
        ds.save_as(dest / f.name)
    return str(series)
