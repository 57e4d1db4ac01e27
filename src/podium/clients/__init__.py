"""Clients of a Podium server, over HTTP only: the API client behind the CLI (and, with the
media pipeline, the speak, listen and load clients). Nothing here imports the server side,
so each client works against any deployment exactly as a third party's would.
"""
