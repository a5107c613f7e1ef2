"""Unit tests of batch transform."""
