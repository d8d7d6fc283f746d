"""kdplugins' run pipelines: a training run (:func:`train_pipeline`) and a test run (:func:`test_pipeline`), each one
function that calls basicsr 1.4.2's own parts in basicsr's order and kdplugins' steps as plain calls where they run.
``python -m kdplugins.train`` / ``kdplugins.test`` run them; a host project calls them instead of basicsr's."""
from kdplugins.pipeline.test import test_pipeline
from kdplugins.pipeline.train import train_pipeline

__all__ = ['train_pipeline', 'test_pipeline']
