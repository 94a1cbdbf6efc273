"""Readable views of results: the console table comparing variants."""
