"""`transformers serve` as a managed engine: its command line, and the translation of the
gateway's OpenAI requests into what that server honours (refusing, with a 400, what it cannot).
"""
