"""Persistence: the SQLite database and the queries the gateway runs on it."""

from gateway.store.db import Priority, Row, Store, StoreError, Tx

__all__ = ["Priority", "Row", "Store", "StoreError", "Tx"]
