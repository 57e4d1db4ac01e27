"""Podium: live audio spaces.

Speakers talk over WebRTC (WHIP), an audience of any size listens over LL-HLS, and the
unedited recording is a replay the moment a space ends. ``podium serve`` runs the whole
platform on one machine; see ``podium.server`` for how the parts are wired.
"""

__version__ = "0.1.0"
