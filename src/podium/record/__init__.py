"""Stage: record. Consumes the segmenter's init segment and parts; produces a durable
recording on disk (every part fsynced as it is made, a manifest with checksums), recovers
it after a crash, and exports the whole program as one M4A file when the space ends.
"""
