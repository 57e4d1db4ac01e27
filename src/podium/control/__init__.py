"""The control plane: accounts, credentials and the lifecycle of spaces.

Consumes requests already parsed by the web shell; produces domain values
(:class:`~podium.control.accounts.User`, :class:`~podium.control.spaces.Space`). It owns
the SQLite database and never touches media: the media stages learn about a space's state
from the composition root, not by importing this package.
"""
