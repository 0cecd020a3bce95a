"""One input's device and writing steps, each keeping its seconds and any error on the input, so
that one bad input never stops a batch: shared by the pipelined flow (:mod:`medseg.infer.flow`)
and the CPU's worker processes (:mod:`medseg.infer.processes`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from medseg.infer.findings import findings, intensities_on_source, statistics_columns, statistics_file
from medseg.infer.outputs import write_outputs
from medseg.infer.segmenter import Prepared, Segmenter, plain

Done = tuple[Prepared, dict[str, str], str]  # (input, files written by kind, note)


def infer(segmenter: Segmenter, prep: Prepared, progress: Callable[[float], None] | None) -> Any:
    """The device's part of one read input (its seconds and any error go on ``prep``)."""
    if prep.error is not None:
        return None
    t0 = time.perf_counter()
    result = None
    try:
        result = segmenter.infer(prep, progress)
    except Exception as err:  # one bad input never stops the batch
        prep.error = plain(err)
    prep.seconds["infer"] = time.perf_counter() - t0
    return result


def finish(segmenter: Segmenter, prep: Prepared, result: Any, out_dir: Path) -> Done:
    """Restore and write one segmented input, and measure what it shows."""
    written: dict[str, str] = {}
    note = ""
    if prep.error is None:
        t0 = time.perf_counter()
        try:
            label, source = segmenter.restore(prep, result)
            cfg, props, names = segmenter.cfg, prep.props, segmenter.segments.names
            assert props is not None
            if cfg.predict.statistics:  # the image as read, on the label's grid
                assert prep.raw is not None
                image = intensities_on_source(prep.raw, prep.meta.get("affine"), props)
                source["statistics"] = statistics_file(image, label, names, props)
            binary = cfg.data.num_classes == 2
            written, note = write_outputs(
                prep.item, label, source, props, cfg.predict, binary, out_dir, segmenter.segments
            )
            prep.findings = findings(label, props.label_affine(), names, props.volume_unit())
            prep.findings |= statistics_columns(source.get("statistics"))
        except Exception as err:  # one bad input never stops the batch
            prep.error = plain(err)
        prep.seconds["write"] = time.perf_counter() - t0
    prep.image = prep.picture = prep.raw = prep.props = (
        None  # free the input's arrays and headers once written
    )
    return prep, written, note
