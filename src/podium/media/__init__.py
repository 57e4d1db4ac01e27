"""The media worker: the second process of ``podium serve``, running the pipeline.

Consumes WHIP offers and space lifecycle commands from the web process (over a Unix
socket); produces the program, one :class:`~podium.media.room.Room` per live space
(ingest → mixer → encode → segment → record), and a feed of parts and health events that
the web process's origin serves. It runs apart from the listener-facing HTTP server, at a
higher scheduling priority, so a flood of listeners cannot put a gap into what speakers
hear or into the recording.
"""
