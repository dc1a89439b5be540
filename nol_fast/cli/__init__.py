"""The ``nol-fast`` command line."""
