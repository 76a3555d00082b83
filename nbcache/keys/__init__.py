"""Keys: hashing rules, code fingerprints, what a cell reads and binds, call keys and why they changed."""
