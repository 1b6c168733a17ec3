"""The operator console: web pages on the admin port (``/``), served by Keyguard itself.

Server-rendered pages (Jinja2, autoescaped) with a little progressive JavaScript, over the
same :class:`~keyguard.admin.service.AdminService` functions and role checks as the admin API.
:mod:`.app` holds the routes and the guard (sessions, CSRF, origin, roles, headers),
:mod:`.sessions` and :mod:`.sql_sessions` the sign-in sessions, :mod:`.pages` and
:mod:`.actions` what each page shows and does, :mod:`.charts` and :mod:`.usage` the charts
and bars. Templates, CSS and JavaScript are package data (``templates/``, ``static/``):
nothing is fetched from elsewhere.
"""

from .app import Console
from .sessions import MemorySessions, Sessions
from .sql_sessions import SqlSessions

__all__ = ["Console", "MemorySessions", "Sessions", "SqlSessions"]
