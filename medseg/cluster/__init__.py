"""Running a study's folds and a batch's parts as jobs: on Slurm, or as processes on one machine.

``medseg run PIPELINE --executor slurm`` submits the folds not yet done as one job array (one fold
per task, each ``medseg run PIPELINE --fold K --stage folds``) and a job that waits for the array
and ends the study (``--stage report``); ``medseg predict ... --executor slurm --parts N`` submits N
tasks over ``--part I/N`` and a job that merges them. ``--executor local --devices 0,1`` runs the
same jobs as processes, one device each. The jobs share the run or output folder through the locks
that ``--fold`` and ``--part`` jobs already take; :mod:`~medseg.cluster.follow` follows them from
the queue and the files they write.

Layout: :mod:`~medseg.cluster.jobs` (what a job runs), :mod:`~medseg.cluster.slurm` and
:mod:`~medseg.cluster.local` (where), :mod:`~medseg.cluster.follow` (``--wait``),
:mod:`~medseg.cluster.submit` (submit or rejoin, record, follow), :mod:`~medseg.cluster.study` and
:mod:`~medseg.cluster.batch` (what a study's and a batch's jobs are), :mod:`~medseg.cluster.checks`.
"""
