"""Edge caches in front of the origin: configuration Podium generates for Varnish.

Consumes the origin's address; produces a configuration that caches exactly what Podium
marks cacheable (parts and segments forever, playlists and the room state for a second,
blocking playlist requests keyed by their query) and passes every write and every
personal request straight through. An edge needs nothing else from Podium: the rules
follow from the HTTP headers the origin sends, so any CDN can apply the same ones.
"""
