"""The public view at ``/public/``: its own Dash app, its own callbacks, its own database role.

* ``app.py``: ``create_public_app(settings)`` builds a Flask server and a
  ``dash.Dash`` of their own, with their own callback registry (it never picks
  up the pages or callbacks of the internal app) and refusing every callback id
  that is not its own; ``mount(server, public)`` serves it under ``/public``
  beside the internal app.
* ``contract.py``: the two callbacks as the browser calls them, and which
  request bodies Dash can take.
* ``answers.py``: the caches that keep it cheap (whole HTTP answers; the pure
  functions' results per snapshot).
* ``queries.py``: reads only the ``public_view`` schema as ``citydash_public``;
  results come from the server-side cache, refreshed at most once per
  ``CITYDASH_PUBLIC_REFRESH_S``.
* ``figures.py`` / ``layout.py``: pure functions from a snapshot to figures,
  tables and components (tests call them directly).
"""
