"""The trained model at work: an OpenAI-compatible server that answers and refines, and export to
GGUF and other formats.

Imports `aries.core`, `aries.backends` and `aries.method`.
"""
