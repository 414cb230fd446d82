"""The ``tuneloop`` command line: one module per command group, thin over the stages' Python API."""
