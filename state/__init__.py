"""The state DB: the only package that talks SQL; everything else goes through ``Store``."""

from state.snapshots import SnapshotInfo
from state.store import Store, warm_up_models

__all__ = ["SnapshotInfo", "Store", "warm_up_models"]
