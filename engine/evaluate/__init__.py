"""Evaluation of a trained encoder beside its random-init baseline.

Self-supervised features are judged by how well labels can be read from them. Every number
here is reported twice: for the trained encoder and for the same architecture freshly
initialised with the run's seed (BatchNorm statistics calibrated as the trainer does),
because a random conv net already gives far-above-chance features on simple images and
only the difference measures what training learned.

Protocols (all on backbone features, ``model.embed`` of :func:`eval_transform`'ed images):

* ``knn``: weighted kNN of Wu et al. 2018 ("Unsupervised Feature Learning via
  Non-Parametric Instance Discrimination") as run by DINO's ``eval_knn`` (Caron et al.
  2021): cosine similarity, the k nearest training images vote with weight
  ``exp(sim / T)``. The bank is the training split, the queries the validation split
  (or, with ``knn_leave_one_out``, every image against all others).
* ``linear``: the linear evaluation protocol (Zhang et al. 2016, "Colorful Image
  Colorization"; Chen et al. 2020, SimCLR): a multinomial logistic regression on frozen,
  standardised features, trained full-batch with L-BFGS and an L2 penalty, as SimCLR's
  transfer experiments do.
* ``fewshot``: n labelled images per class (n = 1, 5, 10) drawn at random, every other
  image classified by cosine similarity to the class prototypes (mean of the normalised
  support features; Snell et al. 2017), features centred and L2-normalised first
  (SimpleShot's CL2N, Wang et al. 2019). With one shot this is cosine 1-NN.
* ``finetune``: backbone + linear head trained end to end for a fixed number of steps on
  the training split with light augmentation, measured on the validation split.

The train/validation split is stratified (``val_fraction`` of each class, at least one
image of every class with two or more) and fixed by ``seed``, so the trained encoder and
the baseline are measured on exactly the same images.
"""

from engine.augment import FINETUNE_AUGMENT
from engine.evaluate.driver import (
    evaluate_model,
    evaluate_models,
    evaluate_run,
    random_init_model,
    resolve_run,
)
from engine.evaluate.options import (
    MODELS,
    PROTOCOL_TEXT,
    PROTOCOLS,
    EvalOptions,
    check_protocols,
    require_labels,
    stratified_split,
)
from engine.evaluate.protocols import few_shot, few_shot_draw, fine_tune, knn_eval, linear_probe
from engine.evaluate.report import format_table, table_rows

__all__ = [
    "FINETUNE_AUGMENT", "MODELS", "PROTOCOLS", "PROTOCOL_TEXT", "EvalOptions",
    "check_protocols", "evaluate_model", "evaluate_models", "evaluate_run", "few_shot",
    "few_shot_draw", "fine_tune", "format_table", "knn_eval", "linear_probe",
    "random_init_model", "require_labels", "resolve_run", "stratified_split", "table_rows",
]
