"""The packages to carry to the GPU machine: medseg's run-time closure less what its image holds.

Walks the requirements of pyproject.toml's ``[project].dependencies`` through the metadata of the
packages installed in this interpreter (so the versions carried are the ones the CPU tests use),
for CPython 3.12 on Linux x86-64, and prints ``name==version`` for each package that the image's
list (``image-packages.txt``) lacks. Never torch (the image has its CUDA build), never MLflow (the
GPU run keeps tracking off). A package the image holds is carried too where medseg's closure needs
a version the image may not have (``ALSO``).

    python benchmarks/gpu/closure.py            # name==version lines
"""

from __future__ import annotations

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import tomllib
from packaging.requirements import Requirement

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NEVER = {"torch", "mlflow", "mlflow-skinny", "mlflow-tracing"}
# in the image, but pydantic-core needs typing-extensions>=4.16 and the image's version is not recorded
ALSO = {"typing-extensions"}
TARGET = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "extra": "",
}


def norm(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages() -> set[str]:
    """The image's package names, from ``image-packages.txt``."""
    lines = (HERE / "image-packages.txt").read_text().splitlines()
    return {norm(n) for line in lines if not line.startswith("#") for n in line.split()}


def closure() -> dict[str, str]:
    """Every package medseg needs at run time on the target, by name, with its installed version."""
    roots = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    todo = [Requirement(r).name for r in roots]
    found: dict[str, str] = {}
    while todo:
        name = norm(todo.pop())
        if name in found or name in NEVER:
            continue
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sys.exit(f"{name}: needed by medseg but not installed in {sys.executable}; install medseg first")
        found[name] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate(TARGET):
                todo.append(req.name)
    return found


def main() -> None:
    image = image_packages()
    for name, version in sorted(closure().items()):
        if name not in image or name in ALSO:
            print(f"{name}=={version}")


if __name__ == "__main__":
    main()
