from __future__ import annotations

from echo_monai.networks.blocks.condition_embedding import ScalarTokenEmbedding
from echo_monai.networks.blocks.factorised_attention import FactorisedAttentionBlock, TemporalTransformer
from echo_monai.networks.blocks.spatiotemporal_resblock import (
    SpatioTemporalResBlock,
    TemporalConvBlock,
    apply_per_frame,
)
from echo_monai.networks.blocks.spatiotemporal_unet_blocks import (
    SpatioTemporalDownBlock,
    SpatioTemporalMidBlock,
    SpatioTemporalUpBlock,
)
from echo_monai.networks.blocks.text_encoder import (
    HuggingFaceTextEncoder,
    MiniLMTextEncoder,
    TextEncoder,
    VocabularyTextEncoder,
    make_text_encoder,
)

__all__ = [
    "FactorisedAttentionBlock",
    "HuggingFaceTextEncoder",
    "MiniLMTextEncoder",
    "ScalarTokenEmbedding",
    "SpatioTemporalDownBlock",
    "SpatioTemporalMidBlock",
    "SpatioTemporalResBlock",
    "SpatioTemporalUpBlock",
    "TemporalConvBlock",
    "TemporalTransformer",
    "TextEncoder",
    "VocabularyTextEncoder",
    "apply_per_frame",
    "make_text_encoder",
]
