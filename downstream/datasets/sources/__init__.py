"""Dataset sources. Importing this package registers the built-in datasets (each module registers itself).

Generic sources (recognised by the form of the TASK argument, see `downstream.datasets.resolve`):
  folders   a folder with one sub-folder per class (optionally under train/ valid/ test/)
  hear      a HEAR task directory (hear-preprocess layout, scene tasks)
"""
from . import folders, hear  # noqa: F401
