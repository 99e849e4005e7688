"""Referring prompts and text encoders for language grounding."""
