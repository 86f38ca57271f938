"""SR4G (Salaberria et al., arXiv 2403.00587): captions with 14 explicit spatial relations derived from
COCO-format object annotations, seen / unseen splits, exports for LoRA trainers, evaluation prompts.

rules (the relations), captions (templates), coco (streamed, checked reading; masks), dataset (filters,
splits, resumable output, exports, prompts), cli (`python -m pos_core sr4g`). No ComfyUI here.
"""

from .dataset import SPLITS, Options, build, export, image_triplets, prompts, read_triplets
from .captions import caption, noun_phrase, plural
from .coco import AnnotationError, load
from .rules import FAMILY, RELATIONS, Margins, pair_relations

__all__ = ["SPLITS", "Options", "build", "export", "image_triplets", "prompts", "read_triplets", "caption",
           "noun_phrase", "plural", "AnnotationError", "load", "FAMILY", "RELATIONS", "Margins", "pair_relations"]
