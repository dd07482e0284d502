"""Runtimes that execute converted artifacts: the LiteRT interpreter, Core ML, and the numpy MIL executor."""
