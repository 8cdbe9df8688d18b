"""The data layer: raw data set reading and checks, phantom, preprocessing cache, samplers.

See docs/CONTRACTS.md ("study/data") for the interface.
"""

from study.data.cache import fingerprint, prepare
from study.data.dataset import DatasetSpec, DataWarning, load_case, read_dataset, resolve_cache_root
from study.data.prepared import Prepared
from study.data.validate import check_dataset

__all__ = ["DataWarning", "DatasetSpec", "Prepared", "check_dataset", "fingerprint", "load_case",
           "prepare", "read_dataset", "resolve_cache_root"]
