"""The raw corpus before tokens: download, cleaning rules, statistics."""
