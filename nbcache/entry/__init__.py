"""Entries: pickling, signing, page-aligned buffers and the signed on-disk format."""
