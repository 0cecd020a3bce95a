"""``python -m medseg``, as torchrun needs it: ``torchrun --nproc_per_node 2 -m medseg run ...``."""

from medseg.cli import main

main()
