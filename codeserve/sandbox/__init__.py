"""Run untrusted candidate programs in isolated, pre-warmed processes.

Kept empty: the zygote imports modules of this package, and its heap size matters."""
