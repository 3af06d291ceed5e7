"""Codeserve: serve and score small code models."""
