"""Leases: one computation per key among processes, on files, object stores or Redis."""
