"""Packages: sim and hil, plus scenarios/ installed as the data package sim.builtin."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["sim", "sim.*", "hil", "hil.*"]) + ["sim.builtin"],
    package_dir={"sim.builtin": "scenarios"},
)
