"""The state DB: the only package that talks SQL; everything else goes through ``Store``."""

from state.runs import RunInfo
from state.snapshots import SnapshotInfo
from state.store import Store

__all__ = ["RunInfo", "SnapshotInfo", "Store"]
