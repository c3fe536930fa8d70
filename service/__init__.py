"""The qfleet service: HTTP API, Redis store, planner and CLI. Build the app with
:func:`qfleet_server.app.create_app`."""

__version__ = "0.1.0"
