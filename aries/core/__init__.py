"""What every other part of aries uses: the config schema, its loader and validation, the CLI
flags generated from it (flags.py), atomic JSONL and folder writes, model and tokenizer loading,
the chat views, the private-API gate for TRL and transformers, process coordination, memory
hygiene, tracker integrations, and the tiny test model.

Imports nothing from aries but `aries.AriesError`.
"""
