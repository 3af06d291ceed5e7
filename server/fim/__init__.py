"""Fill in the middle: templates (data), the model's tokenizer, the prompter that renders a
template token-exactly, the per-model renderer the serving layer calls, and the render dry run.

Import the modules themselves; this package re-exports nothing.
"""
