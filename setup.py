"""The package is declared in pyproject.toml (PEP 621); this file lets older pip versions install it in place."""
from setuptools import setup

setup()
