"""Ingest: the first stage of the pipeline, where speakers' audio enters Podium.

Consumes: WHIP (RFC 9725) requests handed over by the web shell — an SDP offer per speaker
(``POST``), trickled ICE candidates (``PATCH``, ``application/trickle-ice-sdpfrag``) and
teardown (``DELETE``) — and then the speakers' WebRTC media: one Opus track per speaker over
one aiortc peer connection each.

Produces: for each speaker, a stream of :class:`podium.pcm.PcmFrame` (48 kHz mono
float32, ``pts`` in samples on that speaker's own RTP timeline) delivered to the
``on_audio(speaker_id, frame)`` callback given to :class:`~podium.ingest.whip.Stage`; and the
other way, it carries each speaker's mix-minus (fed with :meth:`Stage.send_to`) back on the
same peer connection, so a speaker hears the others without a second session.

Modules:

- :mod:`podium.ingest.sdp`: pure validation of offers and parsing of SDP fragments.
- :mod:`podium.ingest.pcm`: pure conversion of decoded audio frames to PCM frames.
- :mod:`podium.ingest.outbound`: the bounded, paced outbound (mix-minus) track.
- :mod:`podium.ingest.whip`: the sans-HTTP WHIP core, :class:`~podium.ingest.whip.Stage`.
"""

from __future__ import annotations
