"""The state DB: the only package that talks SQL; everything else goes through ``Store``."""

from state.store import RunInfo, SnapshotInfo, Store

__all__ = ["RunInfo", "SnapshotInfo", "Store"]
