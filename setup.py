"""setuptools needs this file only for ``cffi_modules``: libpto's C is compiled at install time."""

from setuptools import setup

setup(cffi_modules=["libpto/_build.py:ffibuilder"])
