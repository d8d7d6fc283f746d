"""Experiment recipes of the papers this project implements (option files generated from data)."""
