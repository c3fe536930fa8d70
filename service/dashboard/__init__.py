"""The admin dashboard: server-rendered pages (Jinja2, autoescaped), live parts refreshed by
vendored htmx, admin-only. Actions are confirmed in the page, CSRF-checked and audited.

- ``views``: the routes, pages and actions, and :func:`install`
- ``session``: sessions, CSRF and origin checks, security headers
- ``context``: the view-models, read through JobService, Store and service/queueing.py
- ``charts``: charts and the chip map as data for the templates to draw in SVG
"""

from .views import install, router

__all__ = ["install", "router"]
