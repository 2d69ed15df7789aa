"""Synthesis methods and the engine that runs them."""
