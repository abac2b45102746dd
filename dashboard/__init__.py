"""citydash dashboard: everything from the database to the browser.

``server.create_app`` builds the Dash app; each page module in ``pages/`` owns
its route, layout and callbacks; ``queries/`` holds the pure query functions
the callbacks call (and the tests call directly).
"""
