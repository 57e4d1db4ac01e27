"""The encode stage: program PCM in, AAC-LC access units out.

Consumes the mixer's program (48 kHz mono float32 blocks of any length, stamped with the
mixer timeline in samples) and produces :class:`~podium.encode.units.AccessUnit` values —
raw AAC-LC frames of 1024 samples with exact program timestamps — plus the
AudioSpecificConfig the segmenter puts in the ``esds`` box. See ``aac`` for the codec
choice and for how timestamps account for the encoder's priming delay.

A pure core over PyAV: no clock, no I/O; the caller feeds it and hands the units on.
"""
