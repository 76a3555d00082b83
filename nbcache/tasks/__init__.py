"""Tasks, futures and executors (threads, loky processes, dask)."""
