"""Lambda entry point for both API surfaces: Mangum around the same FastAPI app.

Lifespan is off because Mangum would enter it on every invocation; nothing in the app needs it.
"""

from mangum import Mangum

from app.main import create_app

app = create_app()
handler = Mangum(app, lifespan="off")
