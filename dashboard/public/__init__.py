"""The public view at ``/public/``: its own Dash app, its own callbacks, its own database role.

* ``app.py``: ``create_public_app(server, settings)`` mounts a separate
  ``dash.Dash`` on the dashboard's Flask server with its own callback registry
  (it never picks up the pages or callbacks of the internal app) and refuses
  every callback id that is not its own.
* ``queries.py``: reads only the ``public_view`` schema as ``citydash_public``;
  results come from the server-side cache, refreshed at most once per
  ``CITYDASH_PUBLIC_REFRESH_S``.
* ``figures.py`` / ``layout.py``: pure functions from a snapshot to figures,
  tables and components (tests call them directly).
"""
