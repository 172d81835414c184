"""Admission policies: decide whether a waiting request may join the running batch."""
