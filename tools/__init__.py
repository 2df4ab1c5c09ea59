"""Tools: make bench."""
