"""Versioned migrations of the control plane's schema (Alembic), for SQLite and PostgreSQL.

Each file in ``versions/`` is one step, named by its revision; a step is never edited once
released, only followed by another. :mod:`podium.control.db` runs them (``podium migrate``;
``podium serve`` on the embedded SQLite database).
"""
