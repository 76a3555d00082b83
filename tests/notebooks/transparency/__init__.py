"""The transparency run over public notebooks: see docs/transparency.md."""
