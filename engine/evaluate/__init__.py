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

Image-text models (CLIP, Radford et al. 2021) are also scored through both towers, in the
joint space (:mod:`engine.retrieval`), unless the request names one of these:

* ``zeroshot``: every class name put into the prompt templates (``zeroshot_templates``,
  separated by '|'), their text embeddings averaged per class (CLIP's prompt
  ensembling, section 3.1.4), each validation image given the nearest class; chance 1 / C.
* ``retrieval``: image-to-text and text-to-image recall@1/5/10 among the validation pairs
  (at most ``retrieval_pairs``, a seeded sample; CLIP's Flickr30k / MSCOCO protocol);
  chance k / N.

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
    ALL_PROTOCOLS,
    MODELS,
    PAIRED_PROTOCOLS,
    PROTOCOL_TEXT,
    PROTOCOLS,
    TEMPLATE_SEPARATOR,
    EvalOptions,
    check_protocols,
    parse_templates,
    require_labels,
    resolve_protocols,
    stratified_split,
)
from engine.evaluate.protocols import (
    few_shot,
    few_shot_draw,
    fine_tune,
    knn_eval,
    linear_probe,
    retrieval,
    zero_shot,
)
from engine.evaluate.report import format_table, table_rows

__all__ = [
    "ALL_PROTOCOLS", "FINETUNE_AUGMENT", "MODELS", "PAIRED_PROTOCOLS", "PROTOCOLS",
    "PROTOCOL_TEXT", "TEMPLATE_SEPARATOR", "EvalOptions", "check_protocols",
    "evaluate_model", "evaluate_models", "evaluate_run", "few_shot", "few_shot_draw",
    "fine_tune", "format_table", "knn_eval", "linear_probe", "parse_templates",
    "random_init_model", "require_labels", "resolve_protocols", "resolve_run", "retrieval",
    "stratified_split", "table_rows", "zero_shot",
]
