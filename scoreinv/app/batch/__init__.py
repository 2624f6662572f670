"""Batch reconstruction of an HDF5 data set: crash-safe, resumable, deterministic, distributed.

* :mod:`~scoreinv.app.batch.workfolder`: the work-folder protocol (manifest, parts, claim and
  resume, configuration identity);
* :mod:`~scoreinv.app.batch.runner`: reads the input, loads the prior, runs the items;
  :func:`reconstruct_h5` is the job;
* :mod:`~scoreinv.app.batch.merge`: merges the parts into the output and summarises it.

The layout of the files is in docs/batch.md.
"""

from scoreinv.app.batch.merge import BatchSummary
from scoreinv.app.batch.runner import reconstruct_h5
from scoreinv.app.batch.workfolder import config_differences, work_folder

__all__ = ["reconstruct_h5", "BatchSummary", "work_folder", "config_differences"]
