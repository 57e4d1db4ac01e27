"""Stage: origin. Consumes the program's parts as the media worker publishes them (and the
recording on disk for what came before); produces what listeners and edge caches fetch over
HTTP: the LL-HLS playlist with blocking reload, the init segment, parts, whole segments and
the single-file replay, each with the cache policy of its kind.
"""
