"""setuptools needs this file only for ``cffi_modules``: the C runtime is compiled at install time."""

from setuptools import setup

setup(cffi_modules=["libpto/_build.py:ffibuilder"])
