"""Runtimes, one module each, imported only when an instance uses them."""
