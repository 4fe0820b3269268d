"""The command line, grouped by who uses it."""
