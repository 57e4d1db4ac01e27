"""The mixer stage: per-speaker PCM in, one program and a mix-minus per speaker out.

Consumes :class:`~podium.pcm.PcmFrame` values pushed per speaker (48 kHz mono
float32, stamped with the speaker's own timeline, e.g. RTP timestamps from ingest) and,
on each 20 ms tick its caller drives, produces a :class:`~podium.mixer.mixer.MixResult`:
the limited program (960 samples, for the encoder), a limited mix-minus for every speaker
(everyone but themself, sent back over WebRTC so speakers hear each other without their
own echo) and a :class:`~podium.mixer.levels.Level` per speaker (who is talking).

Everything here is a pure core: no clock, no I/O, no tasks. Modules, in signal order:

- ``frames``  the PCM value type and the shared constants (48 kHz, 960-sample ticks)
- ``jitter``  per-speaker jitter buffer: speaker timeline -> mixer timeline
- ``levels``  RMS/peak meters and a "talking" indicator with hysteresis and hold
- ``limiter`` soft-knee peak limiter with instant attack and smooth release
- ``mixer``   the ``Mixer`` that ties them together
"""
