"""What the pack's nodes share: their category and the socket types of their own."""

from comfy_api.latest import io

CATEGORY = "PoS spatial"

PosRelations = io.Custom("POS_RELATIONS")
PosAttention = io.Custom("POS_ATTENTION")
PosDetector = io.Custom("POS_DETECTOR")
PosDepth = io.Custom("POS_DEPTH")


def require_relations(relations):
    """The POS_RELATIONS input, or a clear error when nothing (or nothing useful) is connected."""
    if relations is None or not getattr(relations, "relations", None):
        raise ValueError("relations is empty: connect PoS Relations from Prompt or a PoS Relation node")
    return relations
