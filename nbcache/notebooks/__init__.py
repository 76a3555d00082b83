"""Whole notebooks, cached cell by cell: ``nbcache run``, its plan, and the clients that
run notebooks for other tools (papermill's engine, a kernelspec for the rest)."""
