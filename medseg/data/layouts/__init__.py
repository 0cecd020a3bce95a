"""Where the cases of a study come from, one module per layout (``data.layout``):

- ``isic2018``: :mod:`.isic`, pictures and masks in the ISIC 2018 Task 1 folders;
- ``table``: :mod:`.table`, a CSV or inline list of id, image (one or more channel files), label;
- ``nnunet`` and ``decathlon``: :mod:`.nnunet`, the folders and ``dataset.json`` of an nnU-Net v2
  data set or a Medical Segmentation Decathlon task.

Each returns typed cases (:class:`medseg.io.case.Case`) and the cases it could not list, with why.
"""

from __future__ import annotations

from medseg.config.models import DataConfig
from medseg.data.layouts.isic import isic_cases
from medseg.data.layouts.nnunet import dataset_cases
from medseg.data.layouts.table import table_cases
from medseg.io.case import Case
from medseg.io.data_root import data_root

LAYOUTS = {"isic2018": isic_cases, "table": table_cases, "nnunet": dataset_cases, "decathlon": dataset_cases}


def list_cases(data: DataConfig) -> tuple[list[Case], list[dict[str, str]]]:
    """(the cases of ``data``'s layout, the ones it could not list with a ``reason``).

    Raises:
        DataError: no ``data.root`` folder, or what the layout cannot read.
    """
    data_root(data.root)
    return LAYOUTS[data.layout](data)
