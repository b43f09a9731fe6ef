"""Typer front end: one small module per command group; logic lives in the library."""
