"""pos_core: Probability of Superiority (PoS) for spatial relations in text-to-image models.

ComfyUI-free: relation parsing (`relations`), CLIP token lookup (`tokens`), the PSE score
(`pse`), center-based baselines (`baselines`) and the PSG reward and schedule (`guidance`).
"""

__version__ = "0.1.0"
