"""Builds the sandbox zygote's C job loop (codeserve/sandbox/_zygote_loop.c); everything else is in
pyproject.toml. The extension is optional: without a C compiler the install still succeeds and
the zygote runs its Python loop (slower; the sandbox's start-up report says which loop runs)."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "codeserve.sandbox._zygote_loop",
            ["codeserve/sandbox/_zygote_loop.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall"],
        )
    ]
)
