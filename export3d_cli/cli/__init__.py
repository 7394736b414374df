"""The ``export3d`` command line: one module per command, one error boundary in ``app``."""
