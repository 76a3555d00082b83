"""The cache core: live values in memory in front of a store, computing each key once."""
