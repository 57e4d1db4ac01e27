"""The HTTP shell of the control plane: API routes, pages, operations endpoints.

Consumes HTTP requests; produces JSON (RFC 9457 problem details on error), HTML pages and
Prometheus text. It parses and checks input, reads credentials, then calls the control
plane with the time from :mod:`podium.clock`. No business rule lives here.
"""
