"""In-process compatibility layer between the stock HEAR harness and a modern stack.

* `tf.select_tensorflow`: real TensorFlow where it is usable, else the stand-in (`hear_atst.tf_standin`).
* `lightning.apply`: makes heareval's predictions runner run on PyTorch-Lightning 2 and torch >= 2.6 without
  touching its installed files and without changing how it trains or scores.
"""
from .lightning import apply as apply_prediction_compat
from .tf import select_tensorflow

__all__ = ["apply_prediction_compat", "select_tensorflow"]
