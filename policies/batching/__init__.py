"""Batch policies: decide each engine step's batch."""
