"""Token mixers, one family per file; importing this package fills ``MIXERS``."""

from blocks.mixers import (  # noqa: F401
    attention,
    fft_conv,
    fourier,
    global_filter,
    levit,
    linformer,
    long_conv,
    mlp_mixer,
    nystrom,
    performer,
)
