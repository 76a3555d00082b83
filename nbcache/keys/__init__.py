"""Keys: hashing rules, code fingerprints, what cells read and bind, call keys, why they changed."""
