"""Schemathesis hooks for ``test_conformance``: the WHIP bodies (an SDP offer, a trickle-ICE
fragment) are text, sent as the media type the operation declares."""

import schemathesis

schemathesis.serializer.alias(["application/sdp", "application/trickle-ice-sdpfrag"], "text/plain")
