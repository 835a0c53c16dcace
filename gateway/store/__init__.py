"""Persistence: the SQLite database and the queries the gateway runs on it."""

from gateway.store.db import Row, Store, StoreError, Tx

__all__ = ["Row", "Store", "StoreError", "Tx"]
