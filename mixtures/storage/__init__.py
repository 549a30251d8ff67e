"""Data where clusters keep it: local paths and fsspec URLs (S3 and others) behind one store, a bounded
node-shared cache with read-ahead, retries that are counted. See ``store.py``."""

from flanforge.mixtures.storage.config import StorageConfig
from flanforge.mixtures.storage.store import LocalStore, RemoteStore, open_store
from flanforge.mixtures.storage.urls import is_remote

__all__ = ["LocalStore", "RemoteStore", "StorageConfig", "is_remote", "open_store"]
