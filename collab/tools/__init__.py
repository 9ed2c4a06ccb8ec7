"""The tools layer: the ``collab`` command line (serve, database and token maintenance,
history commands), backups, dump and load, and the log filter. It may import every other
layer, and only ``collab.__main__`` (and the ``collab`` console script) imports it.
"""
