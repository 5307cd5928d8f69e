"""Backends behind one interface: a directory stratum, or cvmfs_server (local or over SSH)."""

from cvmfs.backends.base import Backend, OpenTransaction, Owner, RepoStatus, Tag, Transaction

__all__ = ["Backend", "OpenTransaction", "Owner", "RepoStatus", "Tag", "Transaction"]
