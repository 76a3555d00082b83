"""The shell: the IPython extension, magics, status lines, cards, the cache browser, the CLI."""
