"""Running user code under the cache: memoized functions and cells, their output and files."""
