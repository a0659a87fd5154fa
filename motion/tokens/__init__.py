"""Motion tokens: motion ``[B, T, D]`` <-> discrete codes ``[B, K, Tq]``.

- :mod:`motion.tokens.quantizer`: ``VectorQuantizer`` (one EMA codebook), ``ResidualVQ`` (K of them).
- :mod:`motion.tokens.tokenizer`: ``MotionTokenizer``, conv encoder -> residual VQ -> conv decoder.
- :mod:`motion.tokens.stream_decode`: ``StreamingTokenDecoder``, exact incremental decoding of tokens to frames.
"""

from motion.tokens.quantizer import QuantizedResult, ResidualVQ, VectorQuantizer
from motion.tokens.stream_decode import StreamingTokenDecoder, decoder_reach
from motion.tokens.tokenizer import MotionTokenizer, TokenizerOutput

__all__ = [
    "MotionTokenizer",
    "QuantizedResult",
    "ResidualVQ",
    "StreamingTokenDecoder",
    "TokenizerOutput",
    "VectorQuantizer",
    "decoder_reach",
]
