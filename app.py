"""citydash dashboard entry point.

Development: ``python app.py``.  Production: ``gunicorn app:server``.
"""
from core.logs import setup_logging
from core.settings import get_settings
from dashboard.security import check_debug
from dashboard.server import create_app

setup_logging()
app = create_app()
server = app.server

if __name__ == "__main__":
    settings = get_settings()
    app.run(host=settings.host, port=settings.port, debug=check_debug(settings))
