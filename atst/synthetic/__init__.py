"""Generated data for tests, demos and benchmarks, each kind written once:

* `sounds`       tones, chirps, noise bursts and bands, background; scene and event clips
* `speech`       the one espeak-ng wrapper (`speak`, `spoken_word`, `espeak_available`)
* `hear_tasks`   HEAR tasks in the hear-preprocess layout (`make_tasks`)
* `superb`       s3prl dataset layouts (`make_speech_commands`, `make_voxceleb1`)
* `downstream_layouts`  labelled datasets in miniature, native layouts (`make_layout`: spcv2, us8k, nsynth,
                 voxceleb1, fsd50k, audioset)
* `corpus`       the unlabelled pre-training corpus with its manifest (`make_corpus`)
* `checkpoints`  random-weight checkpoints in the official layout (`write_official_checkpoint`)
* `cli`          `python -m atst.synthetic tasks | corpus | speech_commands | voxceleb1 | layout | checkpoint`

Every WAV goes through `atst.audio_io.write_wav`, every other file through `atst.fileio`'s atomic writers.
"""
from .checkpoints import (CLIP_HPARAMS, FRAME_HPARAMS, HEAD_LAYOUT, PROJECTOR_HIDDEN, PROJECTOR_OUT, mlp_head_state,
                          official_state_dict, random_encoder, write_official_checkpoint)
from .corpus import make_corpus
from .downstream_layouts import LAYOUTS, make_layout
from .hear_tasks import SIZES, make_tasks
from .sounds import harmonic, harmonic_tone
from .speech import espeak_available, speak
from .superb import make_speech_commands, make_voxceleb1

__all__ = [
    "CLIP_HPARAMS", "FRAME_HPARAMS", "HEAD_LAYOUT", "LAYOUTS", "PROJECTOR_HIDDEN", "PROJECTOR_OUT", "SIZES",
    "espeak_available", "harmonic", "harmonic_tone", "make_corpus", "make_layout", "make_speech_commands", "make_tasks",
    "make_voxceleb1",
    "mlp_head_state", "official_state_dict", "random_encoder", "speak", "write_official_checkpoint",
]
