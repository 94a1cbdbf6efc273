"""Scenario files: the schema, loading with variants and overrides, and errors."""

from sim.scenario.errors import Problem, ScenarioError
from sim.scenario.load import ScenarioFile, load_scenario_file
from sim.scenario.schema import Scenario

__all__ = ["Problem", "Scenario", "ScenarioError", "ScenarioFile", "load_scenario_file"]
