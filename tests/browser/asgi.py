"""The portal's ASGI application plus static files, for the browser tests.

A deployment serves /static/ from the reverse proxy; the test server has
none, so this wraps the application the way ``runserver`` does.
"""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from portal.asgi import application as portal_application

application = ASGIStaticFilesHandler(portal_application)
