"""smokewatch's library: wildfire smoke found in video by detection, smoke tubes and recurrent verification.

Import the parts from their modules (``pipeline.engine.Engine``, ``pipeline.bundle.ModelBundle``,
``pipeline.config.PipelineConfig``); this package keeps no web, database or training code.
"""

__version__ = "0.1.0"
