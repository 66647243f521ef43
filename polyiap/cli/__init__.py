"""Command-line entry points; they parse, call the library and render results."""
