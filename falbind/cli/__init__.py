"""The ``falbind`` command line: generator commands, validation, inspection and the demo."""
