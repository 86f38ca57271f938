"""What the pack's nodes share: their category and the socket types of their own."""

from comfy_api.latest import io

CATEGORY = "PoS spatial"

PosRelations = io.Custom("POS_RELATIONS")
PosAttention = io.Custom("POS_ATTENTION")
PosDetector = io.Custom("POS_DETECTOR")
PosDepth = io.Custom("POS_DEPTH")
