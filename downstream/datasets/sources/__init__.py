"""Dataset sources. Importing this package registers the built-in datasets (each module registers itself).

Registered datasets, read in their native layouts (`NAME=PATH`):
  spcv2       Speech Commands v0.02              us8k        UrbanSound8K (10 folds)
  nsynth      NSynth instrument families         voxceleb1   VoxCeleb1 speaker identification
  fsd50k      FSD50K (multi-label)               audioset, audioset_b   AudioSet AS-2M / AS-20K (multi-label)
  desed       DESED (strong labels, sed)         as_strong   AudioSet strong labels (sed)

Generic sources (recognised by the form of the TASK argument, see `downstream.datasets.resolve`):
  folders     a folder with one sub-folder per class (optionally under train/ valid/ test/)
  hear        a HEAR task directory (hear-preprocess layout, scene tasks)
  manifest    a CSV/TSV manifest (path,label[,split][,fold])
  hear_events a HEAR event task directory (strong labels, sed)
  strong_tsv  a strong-label TSV or a folder of them (sed)
"""
from . import as_strong, audioset, desed, folders, fsd50k, hear, manifest, nsynth, spcv2, us8k, voxceleb1  # noqa: F401
