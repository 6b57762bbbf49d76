"""An example cellpilot plugin package (see README.md)."""
