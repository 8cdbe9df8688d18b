"""Data: takes a data set folder (dataset.json + NIfTI, nnU-Net v2 raw layout), gives checks,
a preprocessed cache with its split (`Prepared`), seeded samplers and their training-time
augmentation (`study.data.augment`); CLI ``python -m study.data``.

See docs/CONTRACTS.md ("study/data") for the interface.
"""

from study.data.cache import fingerprint, prepare
from study.data.dataset import DatasetSpec, DataWarning, load_case, read_dataset, resolve_cache_root
from study.data.prepared import Prepared
from study.data.validate import check_dataset

__all__ = ["DataWarning", "DatasetSpec", "Prepared", "check_dataset", "fingerprint", "load_case",
           "prepare", "read_dataset", "resolve_cache_root"]
