"""Command-line steps of the pipeline, one module each: ``python -m pixsup.steps.<name>``."""
